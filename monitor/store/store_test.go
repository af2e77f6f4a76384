package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mbvm/mb/monitor"
	"github.com/mbvm/mb/monitor/alert"
	"github.com/mbvm/mb/monitor/threshold"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestOpenMigratesAndIsPrivate(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "monitor")
	path := filepath.Join(dir, "monitor.db")
	s := open(t, path)
	var v int
	var mode string
	if err := s.DB().QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != SchemaVersion() {
		t.Errorf("user_version %d %v, want %d", v, err, SchemaVersion())
	}
	if err := s.DB().QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode %q %v", mode, err)
	}
	if err := s.SaveHost(ctx, monitor.HostRecord{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, path, path + "-wal"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o600)
		if fi.IsDir() {
			want = 0o700
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), want)
		}
	}
	s.Close()
	// Reopening an up-to-date database changes nothing.
	s2 := open(t, path)
	snap, err := s2.Load(ctx)
	if err != nil || len(snap.Hosts) != 1 {
		t.Fatalf("reopen: %v %+v", err, snap)
	}
	// A database from a newer mb is refused.
	if _, err := s2.DB().Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	s2.Close()
	if _, err := Open(ctx, path); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("newer schema: %v", err)
	}
	// A symlink in place of the database is refused.
	link := filepath.Join(dir, "link.db")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, link); err == nil {
		t.Error("opened through a symlink")
	}
}

// TestMigrateForward opens a database written by the current schema with
// a later step added, as a newer mb would: the step runs once, the data
// stays.
func TestMigrateForward(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SaveSilence(ctx, alert.Silence{ID: "keep", Host: "a", Start: t0, End: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	saved := migrations
	t.Cleanup(func() { migrations = saved })
	migrations = append(append([]migration(nil), saved...), migration{sql: `ALTER TABLE silences ADD COLUMN note TEXT NOT NULL DEFAULT 'migrated'`})
	for i := 0; i < 2; i++ { // the second open finds nothing to do
		s2, err := Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		var v int
		var note string
		s2.DB().QueryRow("PRAGMA user_version").Scan(&v)
		if err := s2.DB().QueryRow("SELECT note FROM silences WHERE id = 'keep'").Scan(&note); err != nil || note != "migrated" || v != len(saved)+1 {
			t.Errorf("open %d: version %d note %q %v", i, v, note, err)
		}
		s2.Close()
	}
	// A failing step leaves the database at the last good version.
	migrations = append(append([]migration(nil), migrations...), migration{sql: `THIS IS NOT SQL`})
	if _, err := Open(ctx, path); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("migrate to schema %d", len(saved)+2)) {
		t.Errorf("bad step: %v", err)
	}
	migrations = saved[:len(saved):len(saved)]
	migrations = append(migrations, migration{sql: `ALTER TABLE silences ADD COLUMN note TEXT NOT NULL DEFAULT 'migrated'`})
	s3, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("after a failed step: %v", err)
	}
	s3.Close()
}

func TestStateRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "m.db"))
	h := monitor.HostRecord{
		Name: "web", Source: "hbc", Sources: []string{"vm", "hbc"},
		Addresses: []monitor.AddressChange{{Address: "10.0.0.1", Since: t0}, {Address: "10.0.0.2", Since: t0.Add(time.Hour)}},
		FirstSeen: t0, LastSeen: t0.Add(2 * time.Hour), Reach: monitor.Down, ReachSince: t0.Add(time.Hour), ReachReason: "qemu exited",
	}
	if err := s.SaveHost(ctx, h); err != nil {
		t.Fatal(err)
	}
	h.Reach = monitor.Overdue
	if err := s.SaveHost(ctx, h); err != nil {
		t.Fatal(err)
	}
	a := alert.State{
		Key: alert.Key{Host: "web", Plugin: "disk_monitor", Field: "partitions./.percent"}, Level: alert.Critical, Streak: 1,
		Since: t0, Updated: t0.Add(time.Minute), Value: 97.5, Text: "web CRITICAL: disk", Notified: alert.Critical,
		NotifiedAt: t0, AlertedAt: t0, Peak: alert.Critical, Flapping: true, Stale: true,
		Ack: &alert.Ack{By: "alice", Comment: "resizing", At: t0.Add(time.Minute), Until: t0.Add(4 * time.Hour)},
	}
	reach := alert.State{Key: alert.Key{Host: "web", Plugin: alert.ReachabilityPlugin}, Level: alert.Critical, Notified: alert.Critical}
	for _, x := range []alert.State{a, reach} {
		if err := s.SaveAlert(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	sil := alert.Silence{ID: "s1", Host: "web-*", Plugin: "cpu_monitor", Start: t0, End: t0.Add(2 * time.Hour), By: "bob", Comment: "kernel upgrade", Created: t0}
	if err := s.SaveSilence(ctx, sil); err != nil {
		t.Fatal(err)
	}
	snap, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Hosts) != 1 || !reflect.DeepEqual(snap.Hosts[0], h) {
		t.Errorf("host\n got %+v\nwant %+v", snap.Hosts, h)
	}
	if len(snap.Alerts) != 2 || !reflect.DeepEqual(snap.Alerts[0], a) || !reflect.DeepEqual(snap.Alerts[1], reach) {
		t.Errorf("alerts\n got %+v\nwant %+v %+v", snap.Alerts, a, reach)
	}
	if len(snap.Silences) != 1 || !reflect.DeepEqual(snap.Silences[0], sil) {
		t.Errorf("silences %+v", snap.Silences)
	}
	// Saving without an ack removes it; deletes delete.
	a.Ack = nil
	if err := s.SaveAlert(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSilence(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAlert(ctx, reach.Key); err != nil {
		t.Fatal(err)
	}
	snap, _ = s.Load(ctx)
	if len(snap.Alerts) != 1 || snap.Alerts[0].Ack != nil || len(snap.Silences) != 0 {
		t.Errorf("after deletes %+v", snap)
	}
	// A NaN value (an UNKNOWN from a broken source) must not make the
	// state unloadable.
	bad := alert.State{Key: alert.Key{Host: "web", Plugin: "x", Field: "y"}, Level: alert.Unknown, Value: math.NaN()}
	if err := s.SaveAlert(ctx, bad); err != nil {
		t.Fatal(err)
	}
	if snap, err = s.Load(ctx); err != nil || len(snap.Alerts) != 2 {
		t.Errorf("load with a NaN saved: %v %+v", err, snap.Alerts)
	}
	if err := s.DeleteHost(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if snap, _ = s.Load(ctx); len(snap.Hosts)+len(snap.Alerts) != 0 {
		t.Errorf("after host delete %+v", snap)
	}
}

func note(id string, recovery bool) monitor.Notification {
	level := "CRITICAL"
	if recovery {
		level = "OK"
	}
	return monitor.Notification{ID: id, Time: t0, Host: "web", Plugin: "cpu_monitor", Field: "cpu_percent",
		Level: level, Previous: "OK", Value: "95", Text: "web CRITICAL", Recovery: recovery, Recipients: []string{"alice"}}
}

func TestOutbox(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "m.db"))
	b := Backoff{Initial: 10 * time.Second, Max: 40 * time.Second, GiveUpAfter: 2 * time.Minute}
	id1, err := s.Enqueue(ctx, note("n1", false), "email_ops", t0)
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.Enqueue(ctx, note("n1", false), "email_ops", t0.Add(time.Second))
	if err != nil || again != id1 {
		t.Errorf("re-enqueue: id %d (first %d) %v", again, id1, err)
	}
	id2, _ := s.Enqueue(ctx, note("n1", false), "pushover_ops", t0)
	due, err := s.Due(ctx, t0, 0)
	if err != nil || len(due) != 2 || due[0].ID != id1 {
		t.Fatalf("due: %v %+v", err, due)
	}
	if !reflect.DeepEqual(due[0].Notification, note("n1", false)) {
		t.Errorf("payload round trip: %+v", due[0].Notification)
	}
	// Failures back off: 10 s, 20 s, 40 s, 40 s ... until two minutes are up.
	now := t0
	var delays []time.Duration
	for i := 0; i < 10; i++ {
		gaveUp, err := s.MarkFailed(ctx, id1, now, "connection refused", false, b)
		if err != nil {
			t.Fatal(err)
		}
		if gaveUp {
			break
		}
		next, ok, _ := s.NextDue(ctx)
		if !ok {
			t.Fatal("nothing due")
		}
		if d, _ := s.Due(ctx, now, 0); len(d) != 1 || d[0].ID != id2 {
			t.Fatalf("failed item still due at once: %+v", d)
		}
		items, _ := s.Outbox(ctx, StatusPending, 0)
		var it OutboxItem
		for _, x := range items {
			if x.ID == id1 {
				it = x
			}
		}
		delays = append(delays, it.NextAttempt.Sub(now))
		now = it.NextAttempt
		_ = next
	}
	if fmt.Sprint(delays) != "[10s 20s 40s 40s]" {
		t.Errorf("backoff delays %v", delays)
	}
	failed, _ := s.Outbox(ctx, StatusFailed, 0)
	if len(failed) != 1 || failed[0].ID != id1 || failed[0].Attempts != 5 || failed[0].LastError != "connection refused" {
		t.Errorf("failed items %+v", failed)
	}
	if _, err := s.MarkFailed(ctx, id1, now, "x", false, b); err == nil {
		t.Error("marking a failed item failed again succeeded")
	}
	if err := s.MarkSent(ctx, id2, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkSent(ctx, id2, t0.Add(time.Second)); err == nil {
		t.Error("second MarkSent succeeded")
	}
	chans, err := s.SentChannels(ctx, alert.Key{Host: "web", Plugin: "cpu_monitor", Field: "cpu_percent"}, t0.Add(-time.Hour))
	if err != nil || strings.Join(chans, ",") != "pushover_ops" {
		t.Errorf("sent channels %v %v (the failed email must not count)", chans, err)
	}
	id3, _ := s.Enqueue(ctx, note("n2", true), "x", t0)
	if gaveUp, err := s.MarkFailed(ctx, id3, t0, "400 bad request", true, b); err != nil || !gaveUp {
		t.Errorf("permanent failure: %v %v", gaveUp, err)
	}
	if _, ok, _ := s.NextDue(ctx); ok {
		t.Error("something still due")
	}
	n, err := s.PruneOutbox(ctx, t0.Add(time.Hour))
	if err != nil || n != 3 {
		t.Errorf("pruned %d %v", n, err)
	}
	if d := (Backoff{}).Delay(1); d != DefaultBackoff.Initial {
		t.Errorf("default delay %v", d)
	}
}

// TestOutboxForPipeline: the calls a notification pipeline with its own
// message type and retry timing makes (notify.Outbox and AlertLog map onto
// them one to one).
func TestOutboxForPipeline(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.db")
	s := open(t, path)
	k := alert.Key{Host: "web", Plugin: "reachability"}
	payload := []byte(`{"ID":"m1","Host":"web","Plugin":"reachability","Level":"CRITICAL","Test":false,"Text":"web is down"}`)
	e := Entry{NotificationID: "m1", Channel: "ops/mail", Key: k, Level: "CRITICAL", Payload: payload}
	id, err := s.EnqueueEntry(ctx, e, t0)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := s.EnqueueEntry(ctx, e, t0); err != nil || again != id {
		t.Errorf("re-enqueue %d %v", again, err)
	}
	if got, err := s.ItemID(ctx, "m1", "ops/mail"); err != nil || got != id {
		t.Errorf("ItemID %d %v", got, err)
	}
	if _, err := s.ItemID(ctx, "m1", "other"); !errors.Is(err, ErrNotFound) {
		t.Errorf("ItemID of nothing: %v", err)
	}
	due, _ := s.Due(ctx, t0, 0)
	if len(due) != 1 || string(due[0].Payload) != string(payload) || due[0].Notification.Text != "web is down" {
		t.Fatalf("due %+v", due)
	}
	if err := s.Reschedule(ctx, id, t0.Add(time.Minute), "timeout"); err != nil {
		t.Fatal(err)
	}
	if due, _ := s.Due(ctx, t0.Add(59*time.Second), 0); len(due) != 0 {
		t.Errorf("rescheduled item due early: %+v", due)
	}
	due, _ = s.Due(ctx, t0.Add(time.Minute), 0)
	if len(due) != 1 || due[0].Attempts != 1 || due[0].LastError != "timeout" {
		t.Fatalf("after reschedule %+v", due)
	}
	if err := s.GiveUp(ctx, id, t0.Add(2*time.Minute), "410 gone"); err != nil {
		t.Fatal(err)
	}
	if err := s.GiveUp(ctx, id, t0, "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second give-up: %v", err)
	}
	failed, _ := s.Outbox(ctx, StatusFailed, 0)
	if len(failed) != 1 || failed[0].Attempts != 2 || failed[0].LastError != "410 gone" {
		t.Errorf("failed %+v", failed)
	}
	// The alert log, across a reopen.
	if err := s.AddAlertChannels(ctx, k, []string{"b", "a"}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddAlertChannels(ctx, k, []string{"a", "c"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := open(t, path)
	got, err := s2.TakeAlertChannels(ctx, k)
	if err != nil || strings.Join(got, ",") != "a,b,c" {
		t.Errorf("alert channels %v %v", got, err)
	}
	if got, _ := s2.TakeAlertChannels(ctx, k); len(got) != 0 {
		t.Errorf("taken twice: %v", got)
	}
}

func TestRollups(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "m.db"))
	r := s.NewRollups()
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }
	r.AddSample("web", "cpu_monitor.cpu_percent", at(0), 10)
	r.AddSample("web", "cpu_monitor.cpu_percent", at(30), 30)
	r.AddSample("web", "cpu_monitor.cpu_percent", at(20), 20) // out of order: not last
	r.AddSample("web", "cpu_monitor.cpu_percent", at(61), 50)
	r.AddSample("web", "rtt", at(1), 2)
	r.AddSample("web", "rtt", at(2), 1e309-1e309) // NaN: ignored
	if r.Pending() != 3 {
		t.Errorf("pending %d", r.Pending())
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// A later batch for the same minute merges into its row.
	r.AddSample("web", "cpu_monitor.cpu_percent", at(45), 5)
	r.AddSample("web", "cpu_monitor.cpu_percent", at(3700), 100)
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil { // nothing to do
		t.Fatal(err)
	}
	mins, err := s.Rollups(ctx, "web", "cpu_monitor.cpu_percent", Minute, t0)
	if err != nil {
		t.Fatal(err)
	}
	got := ""
	for _, m := range mins {
		got += fmt.Sprintf("[%s min %v max %v mean %v n %d last %v] ", m.Start.Format("15:04"), m.Min, m.Max, m.Mean, m.Count, m.Last)
	}
	want := "[12:00 min 5 max 30 mean 16.25 n 4 last 5] [12:01 min 50 max 50 mean 50 n 1 last 50] [13:01 min 100 max 100 mean 100 n 1 last 100] "
	if got != want {
		t.Errorf("minutes\n got %s\nwant %s", got, want)
	}
	// The 12:00 hour is over (13:01 was seen): it has its row; 13:00 is
	// in progress and has minute rows only.
	hours, _ := s.Rollups(ctx, "web", "cpu_monitor.cpu_percent", Hour, t0)
	if len(hours) != 1 || hours[0].Count != 5 || hours[0].Min != 5 || hours[0].Max != 50 || hours[0].Last != 50 || hours[0].Mean != 23 {
		t.Errorf("hours %+v", hours)
	}
	if since, _ := s.Rollups(ctx, "web", "cpu_monitor.cpu_percent", Minute, at(90)); len(since) != 2 || since[0].Start != at(60) {
		t.Errorf("since 12:01:30: %+v", since)
	}
	n, err := s.PruneRollups(ctx, t0.Add(7*24*time.Hour+30*time.Minute), 0, 0)
	if err != nil || n != 3 {
		t.Errorf("prune after 7 days: removed %d %v (want the host's two minute rows before 12:30, cpu and rtt sharing the first, and its 12:00 hour row)", n, err)
	}
	if left, _ := s.Rollups(ctx, "web", "cpu_monitor.cpu_percent", Minute, time.Time{}); len(left) != 1 || left[0].Start != at(3660) {
		t.Errorf("left after prune: %+v", left)
	}
}

// TestRollupsFlushBefore: a timed flush writes each minute once it is
// over, and keeps the minute in progress in memory.
func TestRollupsFlushBefore(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "m.db"))
	r := s.NewRollups()
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }
	for i := 0; i < 12; i++ { // 12:00:00 to 12:01:50, every 10 s
		r.AddSample("web", "cpu_monitor.cpu_percent", at(10*i), float64(i))
		r.AddSample("web", "memory_monitor.memory_total", at(10*i), 4e9)
		r.AddSample("db", "cpu_monitor.cpu_percent", at(10*i), 1)
	}
	if err := r.FlushBefore(ctx, at(119)); err != nil {
		t.Fatal(err)
	}
	if r.Pending() != 3 {
		t.Errorf("pending after flushing 12:00: %d, want the three fields of 12:01", r.Pending())
	}
	var rows int
	if err := s.DB().QueryRow("SELECT count(*) FROM rollups").Scan(&rows); err != nil || rows != 2 {
		t.Errorf("%d rows (%v), want one per host for 12:00", rows, err)
	}
	if err := r.FlushBefore(ctx, at(120)); err != nil {
		t.Fatal(err)
	}
	if r.Pending() != 0 {
		t.Errorf("pending after 12:02: %d", r.Pending())
	}
	mins, err := s.Rollups(ctx, "web", "cpu_monitor.cpu_percent", Minute, t0)
	if err != nil || len(mins) != 2 || mins[0].Count != 6 || mins[0].Min != 0 || mins[0].Max != 5 || mins[0].Mean != 2.5 || mins[0].Last != 5 ||
		mins[1].Count != 6 || mins[1].Last != 11 || !mins[1].LastAt.Equal(at(110)) {
		t.Errorf("cpu minutes %+v %v", mins, err)
	}
	mem, err := s.Rollups(ctx, "web", "memory_monitor.memory_total", Minute, t0)
	if err != nil || len(mem) != 2 || mem[1].Min != 4e9 || mem[1].Mean != 4e9 || mem[1].Count != 6 {
		t.Errorf("memory minutes %+v %v", mem, err)
	}
	if none, err := s.Rollups(ctx, "nohost", "cpu_monitor.cpu_percent", Minute, t0); err != nil || len(none) != 0 {
		t.Errorf("unknown host: %+v %v", none, err)
	}
}

func TestRowCodec(t *testing.T) {
	in := []agg{
		{field: 1, count: 6, lastAt: 50, min: 1, max: 9, last: 4, sum: 30},
		{field: 300, count: 1, lastAt: 0, min: 4e9, max: 4e9, last: 4e9, sum: 4e9},
		{field: 2, count: 0},
	}
	data := encodeRow(nil, in)
	if len(data) != 1+1+1+16+2+1+1+4 {
		t.Errorf("encoded %d bytes", len(data))
	}
	out, err := decodeRow(data, nil)
	if err != nil || len(out) != 2 || out[0] != in[0] || out[1] != in[1] {
		t.Errorf("decoded %+v %v", out, err)
	}
	if _, err := decodeRow(data[:len(data)-1], nil); err == nil {
		t.Error("a truncated row decoded")
	}
}

func TestRollupHours(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "m.db"))
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }
	hours := func() string {
		hs, err := s.Rollups(ctx, "h", "f", Hour, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		out := ""
		for _, h := range hs {
			out += fmt.Sprintf("[%s n %d min %v last %v] ", h.Start.Format("15:04"), h.Count, h.Min, h.Last)
		}
		return out
	}
	r := s.NewRollups()
	r.AddSample("h", "f", at(0), 5)
	r.AddSample("h", "f", at(3000), 6)
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := hours(); got != "" {
		t.Errorf("hour in progress has a row: %s", got)
	}
	r.AddSample("h", "f", at(3700), 7)
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := hours(), "[12:00 n 2 min 5 last 6] "; got != want {
		t.Errorf("after the hour: %s, want %s", got, want)
	}
	// A late sample for the closed hour, alone in its batch, updates its row.
	r.AddSample("h", "f", at(3599), 1)
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := hours(), "[12:00 n 3 min 1 last 1] "; got != want {
		t.Errorf("after a late sample: %s, want %s", got, want)
	}
	// A new aggregator (after a restart) rolls up the hour the old one
	// left without an hour row, once a later hour is seen.
	r2 := s.NewRollups()
	r2.AddSample("h", "f", at(3*3600+10), 9)
	if err := r2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := hours(), "[12:00 n 3 min 1 last 1] [13:00 n 1 min 7 last 7] "; got != want {
		t.Errorf("after a restart: %s, want %s", got, want)
	}
}

// The crash test: a child process (this test binary) runs an engine on the
// store, acknowledges an alert, adds a silence and queues notifications,
// says so, and keeps writing until it is killed with SIGKILL. The parent
// then opens the same file and finds everything.
const crashEnv = "MB_MONITOR_STORE_CRASH_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(crashEnv); path != "" {
		if err := crashChild(path); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func crashChild(path string) error {
	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		return err
	}
	roll := s.NewRollups()
	var outboxErr error
	e, err := monitor.New(monitor.Options{
		Settings: monitor.Settings{Thresholds: threshold.Spec{"cpu_monitor": {"cpu_percent": {Critical: ptr(90.0)}}}},
		Store:    s,
		Samples:  roll,
		Notifier: monitor.NotifierFunc(func(ctx context.Context, n monitor.Notification) {
			for _, ch := range []string{"email_ops", "webhook"} {
				if _, err := s.Enqueue(ctx, n, ch, n.Time); err != nil {
					outboxErr = err
				}
			}
		}),
	})
	if err != nil {
		return err
	}
	obs := func(v float64) error {
		return e.Observe(ctx, monitor.Observation{Host: "web", Source: "vm", Plugin: "cpu_monitor", Fields: map[string]any{"cpu_percent": v}})
	}
	if err := obs(95); err != nil {
		return err
	}
	if outboxErr != nil {
		return outboxErr
	}
	k := alert.Key{Host: "web", Plugin: "cpu_monitor", Field: "cpu_percent"}
	if err := e.Acknowledge(ctx, k, "alice", "on it", time.Time{}); err != nil {
		return err
	}
	if _, err := e.AddSilence(ctx, alert.Silence{ID: "maint", Host: "db", End: time.Now().Add(time.Hour), Comment: "kernel upgrade"}); err != nil {
		return err
	}
	fmt.Println("ready")
	for i := 0; ; i++ { // keep the database busy until killed
		if err := obs(95 + float64(i%3)); err != nil {
			return err
		}
		if err := roll.Flush(ctx); err != nil {
			return err
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestCrashKeepsAcksSilencesAndOutbox(t *testing.T) {
	path := filepath.Join(t.TempDir(), "monitor.db")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child said %q, %v", line, err)
	}
	time.Sleep(200 * time.Millisecond) // let it write mid-transaction
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL: %v", err)
	}

	ctx := context.Background()
	s := open(t, path)
	var check string
	if err := s.DB().QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check %q %v", check, err)
	}
	snap, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, a := range snap.Alerts {
		if a.Key.Plugin == "cpu_monitor" {
			found = true
			if a.Level != alert.Critical || a.Ack == nil || a.Ack.By != "alice" || a.Ack.Comment != "on it" {
				t.Errorf("acknowledged alert after the crash: %+v ack %+v", a, a.Ack)
			}
		}
	}
	if !found {
		t.Errorf("alert lost: %+v", snap.Alerts)
	}
	if len(snap.Silences) != 1 || snap.Silences[0].ID != "maint" || snap.Silences[0].Comment != "kernel upgrade" {
		t.Errorf("silences after the crash: %+v", snap.Silences)
	}
	due, err := s.Due(ctx, time.Now().Add(time.Minute), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(due) != 2 || due[0].Notification.Host != "web" || due[0].Notification.Level != "CRITICAL" {
		t.Errorf("queued notifications after the crash: %+v", due)
	}
	// And an engine restores from it: the alert is acknowledged, the silence stands.
	e, err := monitor.New(monitor.Options{Store: s})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Load(ctx); err != nil {
		t.Fatal(err)
	}
	as := e.Alerts(monitor.AlertFilter{Host: "web"})
	if len(as) != 1 || as[0].Ack == nil {
		t.Errorf("engine after restore: %+v", as)
	}
	if len(e.Silences()) != 1 {
		t.Errorf("engine silences after restore: %+v", e.Silences())
	}
	mins, err := s.Rollups(ctx, "web", "cpu_monitor.cpu_percent", Minute, time.Now().Add(-time.Hour))
	if err != nil || len(mins) == 0 {
		t.Errorf("rollups written before the crash: %v %v", mins, err)
	}
}

// TestEngineTickSavesHostsInOneBatch: the engine's minute-by-minute
// last-seen saves go through SaveHosts.
func TestEngineTickSavesHostsInOneBatch(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "m.db"))
	now := t0
	e, err := monitor.New(monitor.Options{Store: s, Clock: func() time.Time { return now }, Settings: monitor.Settings{Interval: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		if err := e.Heartbeat(ctx, fmt.Sprintf("h%02d", i), "hbc", "10.0.0.1:1", time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	now = t0.Add(2 * time.Minute)
	for i := 0; i < 50; i++ {
		if err := e.Heartbeat(ctx, fmt.Sprintf("h%02d", i), "hbc", "", 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Tick(ctx, now); err != nil {
		t.Fatal(err)
	}
	snap, err := s.Load(ctx)
	if err != nil || len(snap.Hosts) != 50 {
		t.Fatalf("%v %d hosts", err, len(snap.Hosts))
	}
	for _, h := range snap.Hosts {
		if !h.LastSeen.Equal(now) || h.Reach != monitor.Up || len(h.Addresses) != 1 {
			t.Errorf("host %+v", h)
		}
	}
}

// TestMigrateV1Rollups: a schema 1 database (rollups keyed by host and
// field) keeps its rollups through the move to series ids.
func TestMigrateV1Rollups(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.db")
	saved := migrations
	migrations = saved[:1:1]
	s, err := Open(ctx, path)
	migrations = saved
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range []struct {
		field  string
		res    int
		bucket int64
	}{{"cpu_monitor.cpu_percent", 60, t0.Unix()}, {"cpu_monitor.cpu_percent", 3600, t0.Unix()}, {"rtt", 60, t0.Unix()}} {
		if _, err := s.DB().Exec(`INSERT INTO rollups (host, field, res, bucket, min, max, sum, count, last, last_at) VALUES ('web', ?, ?, ?, 1, 3, 4, 2, 3, ?)`,
			row.field, row.res, row.bucket, t0.UnixMilli()); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s2 := open(t, path)
	var v int
	s2.DB().QueryRow("PRAGMA user_version").Scan(&v)
	if v != SchemaVersion() {
		t.Errorf("version %d", v)
	}
	got, err := s2.Rollups(ctx, "web", "cpu_monitor.cpu_percent", Minute, t0)
	if err != nil || len(got) != 1 || got[0].Mean != 2 || got[0].Max != 3 || got[0].Last != 3 {
		t.Errorf("migrated minute rollups %+v %v", got, err)
	}
	if got, _ := s2.Rollups(ctx, "web", "rtt", Minute, t0); len(got) != 1 {
		t.Errorf("migrated rtt rollups %+v", got)
	}
	if got, _ := s2.Rollups(ctx, "web", "cpu_monitor.cpu_percent", Hour, t0); len(got) != 1 {
		t.Errorf("migrated hour rollups %+v", got)
	}
	// New rows go in beside them.
	r := s2.NewRollups()
	r.AddSample("web", "cpu_monitor.cpu_percent", t0.Add(time.Minute), 9)
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := s2.Rollups(ctx, "web", "cpu_monitor.cpu_percent", Minute, t0); len(got) != 2 {
		t.Errorf("after a flush %+v", got)
	}
}

// TestRollupsAddReport: a report given whole (the engine's way) rolls up
// as its fields given one by one do; NaN means absent.
func TestRollupsAddReport(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "m.db"))
	r := s.NewRollups()
	names := []string{"cpu_monitor.cpu_percent", "cpu_monitor.load_1", "cpu_monitor.cpu_core_count"}
	nan := float32(math.NaN())
	rows := [][]float32{{10, 0.5, 4}, {30, nan, 4}, {20, 1.5, 4}}
	for i, row := range rows {
		at := t0.Add(time.Duration(10*i) * time.Second)
		r.AddReport("a", at, names, row)
		for j, v := range row {
			if v == v {
				r.AddSample("b", names[j], at, float64(v))
			}
		}
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for _, f := range names {
		a, err1 := s.Rollups(ctx, "a", f, Minute, t0)
		b, err2 := s.Rollups(ctx, "b", f, Minute, t0)
		if err1 != nil || err2 != nil || len(a) != 1 || len(b) != 1 {
			t.Fatalf("%s: %v %v %v %v", f, a, b, err1, err2)
		}
		a[0].Host = "b"
		if a[0] != b[0] {
			t.Errorf("%s: report %+v, samples %+v", f, a[0], b[0])
		}
	}
	if load, _ := s.Rollups(ctx, "a", "cpu_monitor.load_1", Minute, t0); load[0].Count != 2 || load[0].Mean != 1 {
		t.Errorf("load_1 with one report lacking it: %+v", load[0])
	}
}

// TestRollupHoursManyHosts: hour rows are right for every host when the
// hour is rolled up a chunk of hosts at a time.
func TestRollupHoursManyHosts(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "m.db"))
	r := s.NewRollups()
	names := []string{"p.a", "p.b"}
	const n = 2*hourChunk + 100
	for m, at := range []time.Time{t0, t0.Add(30 * time.Minute), t0.Add(time.Hour)} {
		for i := 0; i < n; i++ {
			r.AddReport(fmt.Sprintf("h%04d", i), at, names, []float32{float32(i + m), float32(-i)})
		}
		if err := r.FlushBefore(ctx, at.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	var rows int
	if err := s.DB().QueryRow("SELECT count(*) FROM rollups WHERE res = 3600").Scan(&rows); err != nil || rows != n {
		t.Fatalf("%d hour rows (%v), want %d", rows, err, n)
	}
	for _, i := range []int{0, hourChunk - 1, hourChunk, 2 * hourChunk, n - 1} {
		hs, err := s.Rollups(ctx, fmt.Sprintf("h%04d", i), "p.a", Hour, t0)
		if err != nil || len(hs) != 1 || hs[0].Count != 2 || hs[0].Min != float64(i) || hs[0].Max != float64(i+1) || hs[0].Last != float64(i+1) {
			t.Errorf("host %d: %+v %v", i, hs, err)
		}
	}
}

// TestRollupsClockAhead: a host stamping its samples minutes ahead of the
// flush time keeps at most three minutes in memory.
func TestRollupsClockAhead(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "m.db"))
	r := s.NewRollups()
	for m := 1; m <= 5; m++ {
		r.AddSample("ahead", "p.f", t0.Add(time.Duration(m)*time.Hour), float64(m))
	}
	if err := r.FlushBefore(ctx, t0); err != nil {
		t.Fatal(err)
	}
	if r.Pending() != 3 {
		t.Errorf("%d aggregates in memory, want 3", r.Pending())
	}
	mins, err := s.Rollups(ctx, "ahead", "p.f", Minute, t0)
	if err != nil || len(mins) != 2 || mins[0].Last != 1 || mins[1].Last != 2 {
		t.Errorf("written: %+v %v, want the two oldest minutes", mins, err)
	}
}
