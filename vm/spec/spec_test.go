package spec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseErrorsNameLineAndAcceptedValues(t *testing.T) {
	cases := []struct{ yaml, want string }{
		{"name: a\ncolour: blue\n", "line 2: field colour not found"},
		{"name: a\nmemory: lots\n", "line 2: bad size \"lots\""},
		{"name: a\n\nrestart: sometimes\n", "line 3: bad restart policy \"sometimes\": accepted values: no, on-failure, always"},
		{"name: a\naccel: warp\n", "line 2: bad accel \"warp\": accepted values: auto, kvm, hvf, tcg"},
		{"name: a\nstop_timeout: soon\n", "line 2: bad duration \"soon\""},
		{"name: a\ncpus: many\n", "line 2"},
		{"", "spec is empty"},
	}
	for _, tc := range cases {
		_, err := Parse([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tc.yaml, err, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := func() *Spec { s := &Spec{Name: "dev-1"}; s.SetDefaults(); return s }
	if err := ok().Validate(); err != nil {
		t.Fatalf("default spec invalid: %v", err)
	}
	cases := []struct {
		mut  func(*Spec)
		want string
	}{
		{func(s *Spec) { s.Name = "../etc" }, "invalid VM name"},
		{func(s *Spec) { s.Name = "Dev" }, "invalid VM name"},
		{func(s *Spec) { s.Name = strings.Repeat("a", 64) }, "invalid VM name"},
		{func(s *Spec) { s.Backend = "vbox" }, "accepted values: qemu, applevirt, fake"},
		{func(s *Spec) { s.Memory = 1 << 20 }, "at least 32M"},
		{func(s *Spec) { s.CPUs = 1000 }, "between 1 and 256"},
		{func(s *Spec) { s.SSHPort = 70000 }, "ssh_port"},
		{func(s *Spec) { s.Forwards = []Forward{{Host: 80, Guest: 80}, {Host: 80, Guest: 81}} }, "forwarded twice"},
		{func(s *Spec) { s.SSHPort = 2222; s.Forwards = []Forward{{Host: 2222, Guest: 80}} }, "already the ssh_port"},
		{func(s *Spec) { s.Image = ""; s.Initrd = "x" }, "need a kernel"},
		{func(s *Spec) { s.Image = "../../../../etc" }, "invalid image name"},
		{func(s *Spec) { s.Image = "../../decoy" }, "invalid image name"},
		{func(s *Spec) { s.Image = "a/b" }, "invalid image name"},
		{func(s *Spec) { s.Disk = "json:{\"file.filename\":\"/etc/shadow\"}" }, "json: pseudo-protocol"},
		{func(s *Spec) { s.Disk = "/d.img"; s.DiskFormat = "vmdk" }, "disk_format"},
		{func(s *Spec) { s.DiskFormat = "raw" }, "disk_format needs a disk"},
	}
	for i, tc := range cases {
		s := ok()
		tc.mut(s)
		err := s.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("case %d: Validate = %v, want %q", i, err, tc.want)
		}
	}
}

func TestDefaultsAndRoundTrip(t *testing.T) {
	s := &Spec{Name: "web", Memory: 2 << 30, Forwards: []Forward{{Host: 8080, Guest: 80}}}
	s.SetDefaults()
	if s.Image != DefaultImage || s.CPUs != 1 || s.Restart != RestartNo || s.StopTimeout.D() != 30*time.Second || s.Forwards[0].Proto != "tcp" {
		t.Errorf("defaults not applied: %+v", s)
	}
	dir := t.TempDir()
	if err := s.Save(dir); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir + "/" + FileName)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("spec.yaml mode = %v, %v; want 0600", fi.Mode(), err)
	}
	data, _ := os.ReadFile(dir + "/" + FileName)
	if !strings.Contains(string(data), `restart: "no"`) || !strings.Contains(string(data), "memory: 2G") {
		t.Errorf("spec.yaml does not quote no or write sizes with suffixes:\n%s", data)
	}
	back, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if back.Memory != s.Memory || back.Restart != RestartNo || len(back.Forwards) != 1 || back.Forwards[0] != s.Forwards[0] {
		t.Errorf("round trip changed the spec: %+v -> %+v", s, back)
	}
}

func TestParseSizeAndForward(t *testing.T) {
	for in, want := range map[string]Size{"512M": 512 << 20, "2G": 2 << 30, "1.5G": 3 << 29, "1024": 1 << 30, "64MiB": 64 << 20} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "G", "-1G", "12X", "1e99G"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
	f, err := ParseForward("8080:80")
	if err != nil || f.Host != 8080 || f.Guest != 80 || f.Proto != "tcp" {
		t.Errorf("ParseForward = %+v, %v", f, err)
	}
	if f, err := ParseForward("5353:53/udp"); err != nil || f.Proto != "udp" {
		t.Errorf("udp forward = %+v, %v", f, err)
	}
	for _, bad := range []string{"8080", "a:b", "0:80", "8080:80/sctp", "8080:80:1"} {
		if _, err := ParseForward(bad); err == nil {
			t.Errorf("ParseForward(%q) accepted", bad)
		}
	}
}

func TestResolveAndCheckFiles(t *testing.T) {
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(kernel, []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &Spec{Kernel: "vmlinuz", Initrd: "sub/initrd.img", Disk: "/abs/disk.qcow2"}
	s.ResolvePaths(dir)
	if s.Kernel != kernel || s.Initrd != filepath.Join(dir, "sub/initrd.img") || s.Disk != "/abs/disk.qcow2" {
		t.Fatalf("ResolvePaths: %+v", s)
	}
	err := s.CheckFiles()
	if err == nil {
		t.Fatal("CheckFiles accepted a missing initrd and disk")
	}
	for _, want := range []string{"initrd " + s.Initrd + ": no such file", "disk /abs/disk.qcow2: no such file"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("CheckFiles error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "kernel") {
		t.Errorf("CheckFiles complains about the existing kernel: %v", err)
	}
	if err := (&Spec{Kernel: dir}).CheckFiles(); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("a directory as kernel: %v", err)
	}
	if err := (&Spec{Disk: "rel.img"}).CheckFiles(); err == nil || !strings.Contains(err.Error(), "absolute path") {
		t.Errorf("a relative disk path: %v", err)
	}
	if err := (&Spec{Kernel: kernel}).CheckFiles(); err != nil {
		t.Errorf("an existing kernel: %v", err)
	}
}

// qemu_binary is a bare name or a clean absolute path of an executable.
func TestQEMUBinary(t *testing.T) {
	for _, ok := range []string{"", "qemu-system-x86_64", "qemu-kvm", "/usr/bin/qemu-system-x86_64"} {
		s := &Spec{Name: "q", QEMUBinary: ok}
		if err := s.Validate(); err != nil {
			t.Errorf("qemu_binary %q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"bin/qemu", "../qemu", "/usr/../bin/qemu", "qemu system", "-qemu", "./qemu"} {
		s := &Spec{Name: "q", QEMUBinary: bad}
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "qemu_binary") {
			t.Errorf("qemu_binary %q: %v; want it refused", bad, err)
		}
	}
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{filepath.Join(dir, "none"): "no such file", plain: "not an executable", dir: "not an executable"} {
		if err := (&Spec{QEMUBinary: p}).CheckFiles(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckFiles with qemu_binary %s: %v; want %q", p, err, want)
		}
	}
	if err := (&Spec{QEMUBinary: "/bin/sh"}).CheckFiles(); err != nil {
		t.Errorf("qemu_binary /bin/sh: %v", err)
	}
}
