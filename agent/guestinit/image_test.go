//go:build linux

package guestinit

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
)

// cpioEntry is one member of a newc cpio archive.
type cpioEntry struct {
	mode, uid, gid, mtime uint64
	rdevMajor, rdevMinor  uint64
	data                  []byte
}

// readNewc reads gzip-compressed newc cpio archives (one or several in a
// row, as the kernel accepts them) into a map by path.
func readNewc(r io.Reader) (map[string]cpioEntry, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("gunzip: %w", err)
	}
	br := bufio.NewReader(zr)
	out := map[string]cpioEntry{}
	var off int64
	pad := func() error {
		skip := (4 - off%4) % 4
		_, err := br.Discard(int(skip))
		off += skip
		return err
	}
	for {
		// Between archives: zero padding, then the next one or the end.
		for {
			b, err := br.Peek(1)
			if err == io.EOF {
				return out, nil
			}
			if err != nil {
				return nil, err
			}
			if b[0] != 0 {
				break
			}
			_, _ = br.Discard(1)
			off++
		}
		hdr := make([]byte, 110)
		if _, err := io.ReadFull(br, hdr); err != nil {
			return nil, fmt.Errorf("cpio header at %d: %w", off, err)
		}
		off += 110
		if string(hdr[:6]) != "070701" {
			return nil, fmt.Errorf("not a newc cpio member at %d: magic %q", off-110, hdr[:6])
		}
		field := func(i int) uint64 {
			v, _ := strconv.ParseUint(string(hdr[6+8*i:14+8*i]), 16, 64)
			return v
		}
		e := cpioEntry{mode: field(1), uid: field(2), gid: field(3), mtime: field(5), rdevMajor: field(9), rdevMinor: field(10)}
		size, nameSize := field(6), field(11)
		name := make([]byte, nameSize)
		if _, err := io.ReadFull(br, name); err != nil {
			return nil, err
		}
		off += int64(nameSize)
		if err := pad(); err != nil {
			return nil, err
		}
		e.data = make([]byte, size)
		if _, err := io.ReadFull(br, e.data); err != nil {
			return nil, err
		}
		off += int64(size)
		if err := pad(); err != nil {
			return nil, err
		}
		n := strings.TrimSuffix(string(name), "\x00")
		if n == "TRAILER!!!" {
			continue
		}
		out[strings.TrimPrefix(n, "./")] = e
	}
}

// TestImageContents checks what make image put in the mini image's initrd:
// mb-agent as /init, busybox and its links, every module of
// /etc/modules.order, the shutdown scripts, and reproducible metadata.
func TestImageContents(t *testing.T) {
	m := miniImage(t)
	f, err := os.Open(m.Path(m.Initrd))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files, err := readNewc(f)
	if err != nil {
		t.Fatalf("read %s: %v", m.Path(m.Initrd), err)
	}
	const sIFMT, sIFREG, sIFLNK, sIFCHR = 0o170000, 0o100000, 0o120000, 0o020000
	if c, ok := files["dev/console"]; !ok || c.mode&sIFMT != sIFCHR || c.rdevMajor != 5 || c.rdevMinor != 1 {
		t.Errorf("dev/console is not the console device (char 5:1): %+v", c)
	}
	isExec := func(p string) bool {
		e, ok := files[p]
		return ok && e.mode&sIFMT == sIFREG && e.mode&0o111 != 0
	}
	for _, p := range []string{"init", "bin/busybox", "sbin/poweroff", "sbin/reboot", "sbin/halt", "etc/udhcpc.script"} {
		if !isExec(p) {
			t.Errorf("%s is missing or not an executable file", p)
		}
	}
	if init := files["init"].data; len(init) < 4 || string(init[1:4]) != "ELF" {
		t.Errorf("/init is not an ELF binary")
	}
	for _, p := range []string{"bin/sh", "sbin/ip", "sbin/udhcpc"} {
		e, ok := files[p]
		if !ok || e.mode&sIFMT != sIFLNK || string(e.data) != "/bin/busybox" {
			t.Errorf("%s should be a link to /bin/busybox", p)
		}
	}
	order, ok := files["etc/modules.order"]
	if !ok {
		t.Fatal("etc/modules.order is missing")
	}
	var release string
	for p := range files {
		if rest, ok := strings.CutPrefix(p, "lib/modules/"); ok && !strings.Contains(rest, "/") {
			release = rest
		}
	}
	if release == "" {
		t.Fatal("no lib/modules/<release> directory")
	}
	mods := strings.Fields(string(order.data))
	names := map[string]bool{}
	for _, mod := range mods {
		names[ModuleName(mod)] = true
		e, ok := files["lib/modules/"+release+"/"+mod]
		if !ok {
			t.Errorf("module %s is listed in modules.order but not in the initrd", mod)
			continue
		}
		if len(e.data) < 4 || string(e.data[1:4]) != "ELF" {
			t.Errorf("module %s is not an uncompressed ELF object (finit_module needs it plain)", mod)
		}
	}
	for _, want := range []string{"virtio_ring", "virtio", "virtio_pci", "virtio_console", "virtio_net", "button", "evdev", "pvpanic_pci"} {
		if !names[want] {
			t.Errorf("modules.order lacks %s: %q", want, mods)
		}
	}
	// Reproducible metadata: root-owned, one fixed time.
	for p, e := range files {
		if e.uid != 0 || e.gid != 0 {
			t.Errorf("%s is owned by %d:%d, want 0:0", p, e.uid, e.gid)
		}
		if e.mtime != files["init"].mtime {
			t.Errorf("%s has mtime %d, /init %d: times are not fixed", p, e.mtime, files["init"].mtime)
			break
		}
	}
}
