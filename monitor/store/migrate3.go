package store

import (
	"context"
	"database/sql"
)

// migrateRollupsV3 moves the schema 2 rollups (one row per field and
// bucket) into rollups_v3 (one row per host and bucket), then puts
// rollups_v3 in the place of the old table.
func migrateRollupsV3(ctx context.Context, tx *sql.Tx) error {
	hosts, fields := map[string]int64{}, map[string]int64{}
	put, err := tx.PrepareContext(ctx, "INSERT INTO rollups_v3 (res, bucket, host, data) VALUES (?, ?, ?, ?)")
	if err != nil {
		return err
	}
	defer put.Close()
	rows, err := tx.QueryContext(ctx, `SELECT s.host, s.field, r.res, r.bucket, r.min, r.max, r.sum, r.count, r.last, r.last_at
FROM rollups r JOIN series s ON s.id = r.series ORDER BY r.res, r.bucket, s.host`)
	if err != nil {
		return err
	}
	type rowKey struct {
		res, bucket int64
		host        string
	}
	var cur rowKey
	var aggs []agg
	var buf []byte
	var pending [][4]any
	flush := func() {
		if len(aggs) == 0 {
			return
		}
		buf = encodeRow(nil, aggs)
		pending = append(pending, [4]any{cur.res, cur.bucket, cur.host, buf})
		aggs = aggs[:0]
	}
	for rows.Next() {
		var k rowKey
		var field string
		var mn, mx, sum, last float64
		var count, lastAt int64
		if err := rows.Scan(&k.host, &field, &k.res, &k.bucket, &mn, &mx, &sum, &count, &last, &lastAt); err != nil {
			rows.Close()
			return err
		}
		if k != cur {
			flush()
			cur = k
		}
		fid, ok := fields[field]
		if !ok {
			fid = int64(len(fields) + 1)
			fields[field] = fid
		}
		at := lastAt/1000 - k.bucket
		if at < 0 || at > k.res {
			at = 0
		}
		aggs = append(aggs, agg{field: int32(fid), count: uint32(count), lastAt: uint32(at),
			min: float32(mn), max: float32(mx), last: float32(last), sum: sum})
	}
	flush()
	if err := rows.Close(); err != nil {
		return err
	}
	for _, p := range pending {
		name := p[2].(string)
		hid, ok := hosts[name]
		if !ok {
			hid = int64(len(hosts) + 1)
			hosts[name] = hid
		}
		if _, err := put.ExecContext(ctx, p[0], p[1], hid, p[3]); err != nil {
			return err
		}
	}
	for table, ids := range map[string]map[string]int64{"rollup_hosts": hosts, "rollup_fields": fields} {
		for name, id := range ids {
			if _, err := tx.ExecContext(ctx, "INSERT INTO "+table+" (id, name) VALUES (?, ?)", id, name); err != nil {
				return err
			}
		}
	}
	_, err = tx.ExecContext(ctx, `DROP TABLE rollups; DROP TABLE series; ALTER TABLE rollups_v3 RENAME TO rollups;`)
	return err
}
