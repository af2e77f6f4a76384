package guestinit

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/bits"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Linux input event constants (linux/input-event-codes.h).
const (
	evKey    = 0x01
	keyPower = 116
)

// inputEventSize is sizeof(struct input_event) on 64-bit Linux: a struct
// timeval (two 64-bit words), then type, code (16 bits each) and value (32).
const inputEventSize = 24

// InputEvent is one decoded struct input_event.
type InputEvent struct {
	Type  uint16
	Code  uint16
	Value int32
}

// IsPowerPress reports whether e is a press (not a release or repeat) of
// KEY_POWER.
func (e InputEvent) IsPowerPress() bool {
	return e.Type == evKey && e.Code == keyPower && e.Value == 1
}

// DecodeInputEvents decodes whole 64-bit struct input_event records from
// buf (native little-endian byte order, as on x86_64 and arm64) and returns
// them with the number of bytes used.
func DecodeInputEvents(buf []byte) ([]InputEvent, int) {
	var out []InputEvent
	n := 0
	for len(buf)-n >= inputEventSize {
		rec := buf[n : n+inputEventSize]
		out = append(out, InputEvent{
			Type:  binary.LittleEndian.Uint16(rec[16:18]),
			Code:  binary.LittleEndian.Uint16(rec[18:20]),
			Value: int32(binary.LittleEndian.Uint32(rec[20:24])),
		})
		n += inputEventSize
	}
	return out, n
}

// HasKey reports whether an input device's key capability bitmap, as read
// from /sys/class/input/eventN/device/capabilities/key (hexadecimal words,
// most significant first, each one machine word), has the given key.
func HasKey(bitmap string, key int) bool {
	words := strings.Fields(bitmap)
	idx := key / bits.UintSize
	if idx >= len(words) {
		return false
	}
	w, err := strconv.ParseUint(words[len(words)-1-idx], 16, 64)
	if err != nil {
		return false
	}
	return w&(1<<(uint(key)%bits.UintSize)) != 0
}

// powerButtonDevices returns the /dev/input/eventN paths of the input
// devices that have KEY_POWER, such as the ACPI "Power Button".
func powerButtonDevices(sysRoot, devRoot string) []string {
	caps, _ := filepath.Glob(filepath.Join(sysRoot, "class/input/event*/device/capabilities/key"))
	var out []string
	for _, c := range caps {
		data, err := os.ReadFile(c)
		if err != nil || !HasKey(string(data), keyPower) {
			continue
		}
		ev := filepath.Base(filepath.Dir(filepath.Dir(filepath.Dir(c))))
		out = append(out, filepath.Join(devRoot, "input", ev))
	}
	return out
}

// watchPowerButton opens the power button devices (retrying for up to
// two seconds, in case they appear late) and, until ctx ends, sends one
// value on pressed for each KEY_POWER press. It returns once the devices
// are open, so a press after it returns is never missed.
func watchPowerButton(ctx context.Context, log *slog.Logger, pressed chan<- struct{}) {
	var devs []string
	for wait := 10 * time.Millisecond; ; wait *= 2 {
		devs = powerButtonDevices("/sys", "/dev")
		if len(devs) > 0 || wait > time.Second {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
	if len(devs) == 0 {
		log.Warn("no input device with a power key: the ACPI power button will not work (are the button and evdev modules in the image?)")
		return
	}
	for _, d := range devs {
		f, err := os.Open(d)
		if err != nil {
			log.Warn("cannot watch the power button", "device", d, "err", err)
			continue
		}
		go func() {
			if err := readPowerKey(ctx, f, pressed); err != nil && ctx.Err() == nil {
				log.Warn("power button watch ended", "device", d, "err", err)
			}
		}()
	}
}

// readPowerKey reads input events from f until ctx ends, closing it then.
func readPowerKey(ctx context.Context, f *os.File, pressed chan<- struct{}) error {
	go func() {
		<-ctx.Done()
		f.Close()
	}()
	buf := make([]byte, 64*inputEventSize)
	have := 0
	for {
		n, err := f.Read(buf[have:])
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("read %s: %w", f.Name(), err)
		}
		have += n
		events, used := DecodeInputEvents(buf[:have])
		have = copy(buf, buf[used:have])
		for _, e := range events {
			if e.IsPowerPress() {
				select {
				case pressed <- struct{}{}:
				case <-ctx.Done():
					return nil
				}
			}
		}
	}
}
