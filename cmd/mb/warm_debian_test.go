package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mbvm/mb/vm/image"
)

// A real distribution cloned twice from a snapshot: each clone has what
// was installed before the snapshot, its own hostname and random state,
// SSH with the injected host key, and writes of its own; the snapshot
// cannot be removed while they sit on it.
func TestDebianSnapshotClones(t *testing.T) {
	src := debianImage(t)
	vmSlot(t)
	e := newEnv(t)
	e.ok("image", "import", filepath.Join(src, "disk.qcow2"), "--name", "debian",
		"--kernel", filepath.Join(src, "vmlinuz"), "--initrd", filepath.Join(src, "initrd.img"),
		"--cmdline", "root=/dev/vda rw console=ttyS0 net.ifnames=0", "--agent", "qemu-ga")
	specFile := filepath.Join(e.root, "deb.yaml")
	if err := os.WriteFile(specFile, []byte("name: deb\nimage: debian\nmemory: 512M\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.ok("start", "deb", "-f", specFile, "--timeout", "10m")
	e.ok("ssh", "deb", "--timeout", "5m", "--", "cloud-init status --wait >/dev/null; echo installed | sudo tee /etc/mb-marker >/dev/null")
	e.ok("snapshot", "save", "deb", "s1")
	// The clones' clocks start where the snapshot's stood: let it fall
	// behind, so that a clock left unset shows.
	time.Sleep(4 * time.Second)
	e.ok("clone", "deb", "d1", "d2", "--from", "s1", "--timeout", "5m")

	random := map[string]string{}
	for _, c := range []string{"d1", "d2"} {
		e.eventually("clone "+c+" answering SSH as "+c, func() bool {
			r := e.mb("ssh", c, "--", "hostname")
			return r.code == 0 && strings.TrimSpace(r.stdout) == c
		})
		out := strings.Fields(e.ok("ssh", c, "--", "cat /etc/mb-marker; od -An -N16 -tx1 /dev/urandom | tr -d ' '"))
		if len(out) != 2 || out[0] != "installed" {
			t.Fatalf("clone %s: want the file installed before the snapshot and random bytes, got %q", c, out)
		}
		for other, r := range random {
			if r == out[1] {
				t.Errorf("clones %s and %s read the same random bytes", other, c)
			}
		}
		random[c] = out[1]
		// Stock qemu-ga's guest-set-time runs hwclock -w, which busy-waits
		// the guest's one vCPU for up to a second; its clock is set with
		// date(1) instead, and must be right.
		e.eventually("clone "+c+"'s clock within 2 s of the host's", func() bool {
			before := time.Now().Unix()
			out := e.ok("ssh", c, "--", "date +%s")
			after := time.Now().Unix()
			g, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
			return err == nil && g >= before-2 && g <= after+2
		})
		if log, err := os.ReadFile(filepath.Join(e.home, "vms", c, "vmhost.log")); err != nil {
			t.Error(err)
		} else if !strings.Contains(string(log), "clock set") || !strings.Contains(string(log), "by=\"date") {
			t.Errorf("clone %s: vmhost.log does not say the clock was set with date(1):\n%s", c, log)
		}
	}
	e.ok("ssh", "d1", "--", "echo d1 | sudo tee /etc/only-d1 >/dev/null")
	for _, other := range []string{"d2", "deb"} {
		if out := e.ok("ssh", other, "--", "cat /etc/only-d1 2>/dev/null || echo none"); strings.TrimSpace(out) != "none" {
			t.Errorf("a write in clone d1 shows in %s: %q", other, out)
		}
	}
	r := e.mb("snapshot", "rm", "deb", "s1")
	if r.code == 0 || !strings.Contains(r.stderr, "d1") || !strings.Contains(r.stderr, "d2") {
		t.Errorf("mb snapshot rm of a snapshot two clones sit on: want a refusal naming d1 and d2, got %s", r)
	}
	if r := e.mb("rm", "--force", "deb"); r.code == 0 || !strings.Contains(r.stderr, "d1") {
		t.Errorf("mb rm of the VM whose snapshot two clones sit on: want a refusal naming them, got %s", r)
	}
	// Without the clones only deb's own disk sits on s1: removing it
	// needs deb stopped, then merges s1's disk into deb's.
	e.ok("rm", "--force", "d1", "d2")
	if r := e.mb("snapshot", "rm", "deb", "s1"); r.code == 0 || !strings.Contains(r.stderr, "stop the VM first") {
		t.Errorf("mb snapshot rm under a running VM's disk: want a refusal saying to stop it, got %s", r)
	}
	e.ok("stop", "deb")
	e.ok("snapshot", "rm", "deb", "s1")
	m, err := image.Load(e.home, "debian")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("qemu-img", "info", "-U", "--output=json", filepath.Join(e.home, "vms", "deb", "disk.qcow2")).Output()
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Backing string `json:"full-backing-filename"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatal(err)
	}
	if info.Backing != m.Path(m.Disk) {
		t.Errorf("after the merge deb's disk sits on %q, want the image %s", info.Backing, m.Path(m.Disk))
	}
}
