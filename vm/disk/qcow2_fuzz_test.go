package disk

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// qcow2References reads headers that come from the network and from
// guests: no input may make it panic, loop or allocate without bound.
func FuzzQcow2References(f *testing.F) {
	hdr := make([]byte, 112)
	copy(hdr, qcow2Magic)
	binary.BigEndian.PutUint32(hdr[4:], 3)
	binary.BigEndian.PutUint32(hdr[qcowHeaderLength:], 104)
	f.Add(hdr)
	withBacking := append([]byte(nil), hdr...)
	binary.BigEndian.PutUint64(withBacking[qcowBackingOffset:], 112)
	binary.BigEndian.PutUint32(withBacking[qcowBackingSize:], 11)
	withBacking = append(withBacking, "/etc/shadow"...)
	f.Add(withBacking)
	ext := append([]byte(nil), hdr...)
	binary.BigEndian.PutUint64(ext[qcowIncompatible:], qcowDataFileBit)
	ext = ext[:104]
	ext = binary.BigEndian.AppendUint32(ext, qcowExtDataFile)
	ext = binary.BigEndian.AppendUint32(ext, 4)
	ext = append(ext, "/dev\x00\x00\x00\x00"...)
	f.Add(ext)
	f.Fuzz(func(t *testing.T, data []byte) {
		backing, dataFile, err := qcow2References(bytes.NewReader(data))
		if err == nil && (len(backing) > qcowMaxName || len(dataFile) > qcowMaxName) {
			t.Errorf("names longer than the cap: %d, %d", len(backing), len(dataFile))
		}
	})
}

// The seeds above say what they should.
func TestQcow2ReferencesSeeds(t *testing.T) {
	hdr := make([]byte, 112)
	copy(hdr, qcow2Magic)
	binary.BigEndian.PutUint32(hdr[4:], 3)
	binary.BigEndian.PutUint32(hdr[qcowHeaderLength:], 104)
	b := append([]byte(nil), hdr...)
	binary.BigEndian.PutUint64(b[qcowBackingOffset:], 112)
	binary.BigEndian.PutUint32(b[qcowBackingSize:], 11)
	b = append(b, "/etc/shadow"...)
	if backing, dataFile, err := qcow2References(bytes.NewReader(b)); err != nil || backing != "/etc/shadow" || dataFile != "" {
		t.Errorf("backing header: %q %q %v", backing, dataFile, err)
	}
	d := append([]byte(nil), hdr[:104]...)
	binary.BigEndian.PutUint64(d[qcowIncompatible:], qcowDataFileBit)
	d = binary.BigEndian.AppendUint32(d, qcowExtDataFile)
	d = binary.BigEndian.AppendUint32(d, 4)
	d = append(d, "/dev\x00\x00\x00\x00"...)
	if backing, dataFile, err := qcow2References(bytes.NewReader(d)); err != nil || backing != "" || dataFile != "/dev" {
		t.Errorf("data file header: %q %q %v", backing, dataFile, err)
	}
}
