package store

import (
	"encoding/binary"
	"errors"
	"math"
)

// A rollup row holds every field of one host for one bucket in a blob,
// one entry per field:
//
//	uvarint field id (rollup_fields.id)
//	uvarint count<<1 | 1 when min, max and last are equal
//	uvarint seconds from the bucket's start to the last sample
//	float32 value                  when equal
//	float32 min, max, mean, last   otherwise (little endian)
//
// A field that changes within the minute takes 19 to 21 bytes, a
// constant one 7 to 9.

// encodeRow appends the entries of aggs to buf.
func encodeRow(buf []byte, aggs []agg) []byte {
	for i := range aggs {
		a := &aggs[i]
		if a.count == 0 {
			continue
		}
		same := a.min == a.max && a.min == a.last
		flag := uint64(a.count) << 1
		if same {
			flag |= 1
		}
		buf = binary.AppendUvarint(buf, uint64(uint32(a.field)))
		buf = binary.AppendUvarint(buf, flag)
		buf = binary.AppendUvarint(buf, uint64(a.lastAt))
		if same {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(a.min))
			continue
		}
		mean := float32(a.sum / float64(a.count))
		for _, v := range [4]float32{a.min, a.max, mean, a.last} {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
		}
	}
	return buf
}

var errBadRow = errors.New("corrupt rollup row")

// decodeRow appends the entries of a row to out.
func decodeRow(data []byte, out []agg) ([]agg, error) {
	uv := func() (uint64, bool) {
		v, n := binary.Uvarint(data)
		if n <= 0 {
			return 0, false
		}
		data = data[n:]
		return v, true
	}
	f32 := func() float32 {
		v := math.Float32frombits(binary.LittleEndian.Uint32(data))
		data = data[4:]
		return v
	}
	for len(data) > 0 {
		field, ok1 := uv()
		flag, ok2 := uv()
		lastAt, ok3 := uv()
		if !ok1 || !ok2 || !ok3 || field > math.MaxInt32 || flag>>1 > math.MaxUint32 || lastAt > math.MaxUint32 {
			return out, errBadRow
		}
		a := agg{field: int32(field), count: uint32(flag >> 1), lastAt: uint32(lastAt)}
		if flag&1 == 1 {
			if len(data) < 4 {
				return out, errBadRow
			}
			v := f32()
			a.min, a.max, a.last = v, v, v
			a.sum = float64(v) * float64(a.count)
		} else {
			if len(data) < 16 {
				return out, errBadRow
			}
			a.min, a.max = f32(), f32()
			a.sum = float64(f32()) * float64(a.count)
			a.last = f32()
		}
		out = append(out, a)
	}
	return out, nil
}
