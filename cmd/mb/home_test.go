package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// plantTarget makes a file outside $MB_HOME that a planted link aims at.
func plantTarget(t *testing.T) string {
	t.Helper()
	target := filepath.Join(t.TempDir(), "root-owned")
	if err := os.WriteFile(target, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return target
}

func assertUntouched(t *testing.T, target string) {
	t.Helper()
	if b, err := os.ReadFile(target); err != nil || string(b) != "precious\n" {
		t.Errorf("mb wrote through the planted link into %s: %q, %v", target, b, err)
	}
}

// Issue 10, item 2: MB_HOME=/tmp/evil, made by another user with mode 0777
// and a daemon.log linked to a file of root's. mb refuses the directory,
// naming it, and writes nothing through the link.
func TestRefusesHomeOfAnotherUser(t *testing.T) {
	e := newEnv(t)
	target := plantTarget(t)
	if err := os.Symlink(target, filepath.Join(e.home, "daemon.log")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(e.home, 0o777); err != nil {
		t.Fatal(err)
	}
	r := e.mb("ls")
	if r.code == 0 || !strings.Contains(r.stderr, e.home) || !strings.Contains(r.stderr, "chmod 700") {
		t.Errorf("mb ls in a 0777 MB_HOME: %v; want a refusal naming %s and the fix", r, e.home)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(e.home, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		r = e.mb("ls")
		if r.code == 0 || !strings.Contains(r.stderr, e.home) || !strings.Contains(r.stderr, "uid 65534") {
			t.Errorf("mb ls in another user's MB_HOME: %v; want a refusal naming %s and its owner", r, e.home)
		}
	}
	assertUntouched(t, target)
}

// A daemon.log symlink planted in one's own MB_HOME is not written through.
func TestDaemonLogSymlinkNotFollowed(t *testing.T) {
	e := newEnv(t)
	target := plantTarget(t)
	if err := os.Symlink(target, filepath.Join(e.home, "daemon.log")); err != nil {
		t.Fatal(err)
	}
	if r := e.mb("ls"); r.code == 0 || !strings.Contains(r.stderr, "symbolic link") {
		t.Errorf("mb ls with daemon.log a symlink: %v; want a refusal naming the link", r)
	}
	assertUntouched(t, target)
}

// A vmhost.log symlink planted in a VM's directory is not written through.
func TestVMHostLogSymlinkNotFollowed(t *testing.T) {
	e := newEnv(t)
	e.ok("start", "x", "--backend", "fake")
	e.ok("stop", "x")
	target := plantTarget(t)
	log := filepath.Join(e.home, "vms", "x", "vmhost.log")
	if err := os.Remove(log); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, log); err != nil {
		t.Fatal(err)
	}
	r := e.mb("start", "x")
	if r.code == 0 || !strings.Contains(r.stderr, "symbolic link") {
		t.Errorf("mb start with vmhost.log a symlink: %v; want a refusal naming the link", r)
	}
	assertUntouched(t, target)
}
