package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/vm/image"
)

// runImage runs `mb image ARGS` in-process under mbHome.
func runImage(t *testing.T, mbHome string, args ...string) (string, string, error) {
	t.Helper()
	t.Setenv(layout.Env, mbHome)
	var out, errb bytes.Buffer
	a := &app{stdin: strings.NewReader(""), stdout: &out, stderr: &errb}
	cmd := a.imageCmd()
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := cmd.ExecuteContext(ctx)
	return out.String(), errb.String(), err
}

func TestImageCommands(t *testing.T) {
	for _, tool := range []string{"qemu-img", "qemu-io"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install qemu-utils)", tool)
		}
	}
	src := filepath.Join(t.TempDir(), "base.qcow2")
	for _, args := range [][]string{
		{"qemu-img", "create", "-q", "-f", "qcow2", src, "32M"},
		{"qemu-io", "-f", "qcow2", "-c", "write -P 0x42 0 1M", src},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	mbHome := t.TempDir()

	out, _, err := runImage(t, mbHome, "import", src, "--name", "deb", "--agent", "qemu-ga")
	if err != nil || !strings.HasPrefix(out, "deb\tqcow2\t") {
		t.Fatalf("import: %q, %v", out, err)
	}
	out, _, err = runImage(t, mbHome, "pull", "file://"+src, "--name", "deb2")
	if err != nil || !strings.HasPrefix(out, "deb2\tqcow2\tsha256:") {
		t.Fatalf("pull: %q, %v", out, err)
	}
	// A VM using deb.
	vmDir := layout.VMDir(mbHome, "web")
	if err := os.MkdirAll(vmDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vmDir, "spec.yaml"), []byte("name: web\nimage: deb\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	out, _, err = runImage(t, mbHome, "ls")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") || !strings.HasPrefix(lines[1], "deb ") || !strings.Contains(lines[1], "qcow2") || !strings.HasSuffix(lines[1], "web") {
		t.Errorf("mb image ls:\n%s", out)
	}
	out, _, err = runImage(t, mbHome, "ls", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var entries []image.Entry
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatalf("ls --json: %v\n%s", err, out)
	}
	if len(entries) != 2 || entries[0].Name != "deb" || entries[0].Format != "qcow2" || entries[0].SHA256 != entries[1].SHA256 ||
		len(entries[0].UsedBy) != 1 || entries[0].UsedBy[0] != "web" || len(entries[1].UsedBy) != 0 {
		t.Errorf("ls --json: %+v", entries)
	}

	if _, _, err := runImage(t, mbHome, "rm", "deb"); err == nil || !strings.Contains(err.Error(), "web") {
		t.Errorf("rm of an image in use: err = %v, want a refusal naming the VM", err)
	}
	if out, _, err := runImage(t, mbHome, "rm", "deb2"); err != nil || strings.TrimSpace(out) != "deb2" {
		t.Errorf("rm deb2: %q, %v", out, err)
	}
	if _, _, err := runImage(t, mbHome, "pull", "file://"+src, "--name", "bad", "--sha256", strings.Repeat("0", 64)); err == nil || !strings.Contains(err.Error(), "mismatch") {
		t.Errorf("pull with a wrong digest: err = %v", err)
	}
	if _, err := os.Stat(layout.ImageDir(mbHome, "bad")); !os.IsNotExist(err) {
		t.Errorf("a wrong-digest pull left %s: %v", layout.ImageDir(mbHome, "bad"), err)
	}
}
