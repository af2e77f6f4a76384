package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/internal/testenv"
	"github.com/mbvm/mb/vm/image"
	"github.com/mbvm/mb/vm/sshkeys"
)

// debianImage finds the Debian test image scripts/mkimage-debian.sh built
// ($MB_CACHE, default /var/cache/mb-test/debian). Without it the test is
// ends through testenv.Need.
func debianImage(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("MB_CACHE")
	if dir == "" {
		dir = "/var/cache/mb-test/debian"
	}
	for _, f := range []string{"disk.qcow2", "vmlinuz", "initrd.img"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			msg := "the Debian test image is missing (" + err.Error() + "): build it with `make debian-image` (scripts/mkimage-debian.sh, needs root)"
			testenv.Need(t, msg)
		}
	}
	return dir
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestDebianDistro boots a real distribution: a Debian bookworm image with
// systemd, cloud-init, openssh-server and the stock qemu-guest-agent. It
// takes a few minutes under tcg.
func TestDebianDistro(t *testing.T) {
	src := debianImage(t)
	if testing.Short() {
		t.Skip("boots Debian under tcg for minutes; skipped with -short")
	}
	e := newEnv(t)
	if r := e.mb("ssh", "--help"); r.code != 0 {
		t.Fatalf("mb ssh --help failed: %s", r)
	}

	// 1. Import the image the script built.
	e.ok("image", "import", filepath.Join(src, "disk.qcow2"), "--name", "debian",
		"--kernel", filepath.Join(src, "vmlinuz"), "--initrd", filepath.Join(src, "initrd.img"),
		"--cmdline", "root=/dev/vda rw console=ttyS0 net.ifnames=0", "--agent", "qemu-ga")
	m, err := image.Load(e.home, "debian")
	if err != nil {
		t.Fatal(err)
	}
	base := m.Path(m.Disk)
	if got := sha256File(t, base); got != m.SHA256 {
		t.Fatalf("imported base digest %s, manifest says %s", got, m.SHA256)
	}

	// 2. Boot it, with user-data of our own merged into mb's seed.
	specFile := filepath.Join(t.TempDir(), "deb.yaml")
	specDoc := `name: deb
image: debian
memory: 1G
disk_size: 3G
user_data: |
  #cloud-config
  write_files:
    - path: /etc/mb-user-data
      content: merged
`
	if err := os.WriteFile(specFile, []byte(specDoc), 0o600); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	e.ok("start", "deb", "-f", specFile, "--timeout", "10m")
	t.Logf("mb start deb: ready (qemu-ga answers) after %s", time.Since(begin).Round(100*time.Millisecond))
	if _, err := os.Stat(filepath.Join(layout.VMDir(e.home, "deb"), "seed.iso")); err != nil {
		t.Fatalf("the qemu backend attached no cloud-init seed: %v", err)
	}
	defer e.mb("stop", "--force", "deb")

	// cloud-init applied the seed: its user-data, the hostname, the user.
	out := e.ok("ssh", "deb", "--timeout", "5m", "--", "cloud-init status --wait >/dev/null; cloud-init status; cat /etc/mb-user-data; echo; hostname; sudo -n id -u")
	for _, want := range []string{"status: done", "merged", "deb", "\n0"} {
		if !strings.Contains(out, want) {
			t.Errorf("cloud-init did not apply the seed: %q lacks %q", out, want)
		}
	}
	t.Logf("cloud-init status --wait returned %s after mb start began", time.Since(begin).Round(100*time.Millisecond))
	// mb ssh: the host key is the injected one, checked strictly.
	if out := e.ok("ssh", "deb", "--", "uname", "-a"); !strings.HasPrefix(out, "Linux deb ") {
		t.Errorf("mb ssh deb -- uname -a printed %q", out)
	}
	keys, err := sshkeys.Load(layout.VMDir(e.home, "deb"))
	if err != nil {
		t.Fatal(err)
	}
	guestKey := strings.Fields(e.ok("ssh", "deb", "--", "sudo", "cat", "/etc/ssh/ssh_host_ed25519_key.pub"))
	if len(guestKey) < 2 || guestKey[1] != strings.Fields(keys.HostPublic)[1] {
		t.Errorf("the guest's host key %v is not the injected %s", guestKey, keys.HostPublic)
	}
	if r := e.mb("ssh", "deb", "--", "exit 7"); r.code != 7 {
		t.Errorf("mb ssh exit code %d, want the remote command's 7\n%s", r.code, r)
	}
	// mb ssh-config works with the system ssh as it is.
	cfg := filepath.Join(t.TempDir(), "ssh_config")
	if err := os.WriteFile(cfg, []byte(e.ok("ssh-config", "deb")), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ssh", "-F", cfg, "-o", "BatchMode=yes", "deb", "echo", "via-config").CombinedOutput(); err != nil || !strings.Contains(string(out), "via-config") {
		t.Errorf("ssh -F <mb ssh-config> deb: %v\n%s", err, out)
	}

	// mb exec through the stock qemu-guest-agent.
	if out := e.ok("exec", "deb", "--", "hostname"); strings.TrimSpace(out) != "deb" {
		t.Errorf("mb exec deb -- hostname printed %q", out)
	}
	// mb cp and mb shell without mb-agent go over SSH (cmd_cp.go).
	cpDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(cpDir, "f"), []byte("over ssh\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	e.ok("cp", filepath.Join(cpDir, "f"), "deb:/tmp/f")
	e.ok("cp", "deb:/tmp/f", filepath.Join(cpDir, "back"))
	if b, err := os.ReadFile(filepath.Join(cpDir, "back")); err != nil || string(b) != "over ssh\n" {
		t.Errorf("mb cp in and out over SSH: %q, %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(cpDir, "back")); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("mode after mb cp over SSH: %v, %v", fi, err)
	}
	if r := e.mb("shell", "deb", "--", "sh", "-c", "exit 3"); r.code != 3 {
		t.Errorf("mb shell deb over SSH: %s, want exit 3", r)
	}
	// mb ls shows the guest's address (from the agent).
	e.eventually("an IP in mb ls", func() bool {
		v := findVM(e.list(), "deb")
		return v != nil && slices.Contains(v.IPs, "10.0.2.15")
	})

	// The guest writes to its disk; then a clean stop through the agent.
	e.ok("ssh", "deb", "--", "sudo dd if=/dev/urandom of=/var/tmp/blob bs=1M count=16 status=none && sync")
	e.ok("stop", "deb")
	var v struct {
		State     string `json:"state"`
		StoppedBy string `json:"stopped_by"`
	}
	if err := json.Unmarshal([]byte(e.ok("info", "--json", "deb")), &v); err != nil {
		t.Fatal(err)
	}
	if v.State != "stopped" || v.StoppedBy != "agent" {
		t.Errorf("after mb stop: state %q stopped_by %q, want stopped by the agent", v.State, v.StoppedBy)
	}
	// systemd shut the guest down cleanly (dbus and logind at work).
	serial, err := os.ReadFile(filepath.Join(layout.VMDir(e.home, "deb"), layout.SerialLog))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(serial), "systemd-shutdown") || !strings.Contains(string(serial), "reboot: Power down") {
		t.Errorf("serial.log shows no clean systemd power-off:\n%s", distroTail(string(serial), 2000))
	}

	// 3. The base image never changed.
	if got := sha256File(t, base); got != m.SHA256 {
		t.Errorf("base image digest changed from %s to %s", m.SHA256, got)
	}
}

// distroTail returns the last n bytes of s.
func distroTail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
