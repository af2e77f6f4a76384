package guestinit

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func event(typ, code uint16, value int32) []byte {
	b := make([]byte, inputEventSize)
	binary.LittleEndian.PutUint64(b[0:], 1700000000) // tv_sec
	binary.LittleEndian.PutUint64(b[8:], 123)        // tv_usec
	binary.LittleEndian.PutUint16(b[16:], typ)
	binary.LittleEndian.PutUint16(b[18:], code)
	binary.LittleEndian.PutUint32(b[20:], uint32(value))
	return b
}

func TestDecodeInputEvents(t *testing.T) {
	var buf []byte
	buf = append(buf, event(evKey, keyPower, 1)...) // press
	buf = append(buf, event(0, 0, 0)...)            // EV_SYN
	buf = append(buf, event(evKey, keyPower, 0)...) // release
	buf = append(buf, event(evKey, 30, 1)...)       // KEY_A press
	buf = append(buf, event(evKey, keyPower, 2)...) // autorepeat
	buf = append(buf, 1, 2, 3)                      // a partial record
	events, used := DecodeInputEvents(buf)
	if len(events) != 5 || used != 5*inputEventSize {
		t.Fatalf("decoded %d events using %d bytes, want 5 and %d", len(events), used, 5*inputEventSize)
	}
	if events[0] != (InputEvent{Type: evKey, Code: keyPower, Value: 1}) {
		t.Errorf("events[0] = %+v", events[0])
	}
	var presses []int
	for i, e := range events {
		if e.IsPowerPress() {
			presses = append(presses, i)
		}
	}
	if !slices.Equal(presses, []int{0}) {
		t.Errorf("power presses at %v, want only [0] (not release, other key, repeat)", presses)
	}
	if events[2].Value != 0 || events[3].Code != 30 {
		t.Errorf("events = %+v", events)
	}
	neg := event(3, 0, -5)
	if e, _ := DecodeInputEvents(neg); e[0].Value != -5 {
		t.Errorf("negative value decoded as %d", e[0].Value)
	}
}

func TestHasKey(t *testing.T) {
	// The ACPI power button of a QEMU q35 guest: KEY_POWER (116) only.
	const powerButton = "10000000000000 0"
	// An AT keyboard's long bitmap, which has KEY_POWER too.
	const atkbd = "402000000 3803078f800d001 feffffdfffefffff fffffffffffffffe"
	// The ACPI sleep button: KEY_SLEEP (142) only.
	const sleepButton = "4000 0 0"
	for _, c := range []struct {
		bitmap string
		key    int
		want   bool
	}{
		{powerButton, keyPower, true},
		{powerButton, 30, false},
		{atkbd, keyPower, true},
		{sleepButton, keyPower, false},
		{sleepButton, 142, true},
		{"", keyPower, false},
		{"zz 0", keyPower, false},
	} {
		if got := HasKey(c.bitmap, c.key); got != c.want {
			t.Errorf("HasKey(%q, %d) = %v, want %v", c.bitmap, c.key, got, c.want)
		}
	}
}

func TestPowerButtonDevices(t *testing.T) {
	sys := t.TempDir()
	for name, caps := range map[string]string{
		"event0": "10000000000000 0\n", // power button
		"event1": "4000 0 0\n",         // sleep button
	} {
		dir := filepath.Join(sys, "class/input", name, "device/capabilities")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "key"), []byte(caps), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := powerButtonDevices(sys, "/dev")
	if !slices.Equal(got, []string{"/dev/input/event0"}) {
		t.Errorf("powerButtonDevices = %q, want [/dev/input/event0]", got)
	}
}
