package qemu

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestHostArch(t *testing.T) {
	for goarch, want := range map[string]arch{"amd64": archX86_64, "arm64": archAArch64} {
		if got, err := hostArch(goarch); err != nil || got != want {
			t.Errorf("hostArch(%s) = %s, %v; want %s", goarch, got, err, want)
		}
	}
	if _, err := hostArch("riscv64"); err == nil || !strings.Contains(err.Error(), "amd64 and arm64") {
		t.Errorf("hostArch(riscv64): err = %v", err)
	}
	if binaryName(archAArch64) != "qemu-system-aarch64" {
		t.Errorf("binaryName = %s", binaryName(archAArch64))
	}
}

// fakeQEMU writes an executable script that prints out for --version.
func fakeQEMU(t *testing.T, out string) string {
	path := filepath.Join(t.TempDir(), "qemu-system-x86_64")
	script := "#!/bin/sh\nprintf '%s\\n' '" + out + "'\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestFindBinary(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		binary  string
		wantErr []string
		want    string
	}{
		{"current", fakeQEMU(t, "QEMU emulator version 8.2.2 (Debian)"), nil, "8.2.2"},
		{"too old", fakeQEMU(t, "QEMU emulator version 6.2.0"), []string{"QEMU 6.2.0", "7.1 or newer", "install"}, ""},
		{"not qemu", fakeQEMU(t, "hello"), []string{"unrecognised version output", "hello"}, ""},
		{"missing", "qemu-system-mb-missing", []string{"qemu-system-mb-missing not found", "install it with"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := findBinary(ctx, tt.binary, archX86_64, versionCache{})
			if tt.wantErr == nil {
				if err != nil || b.Version.String() != tt.want || b.Path != tt.binary {
					t.Fatalf("findBinary = %+v, %v; want version %s", b, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("findBinary succeeded, want an error with %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestVersionCache: the version is read from the cache while the binary is
// unchanged, and checked again once it changes.
func TestVersionCache(t *testing.T) {
	ctx := context.Background()
	cache := newVersionCache(t.TempDir())
	bin := fakeQEMU(t, "QEMU emulator version 8.2.2")
	if b, err := findBinary(ctx, bin, archX86_64, cache); err != nil || b.Version.String() != "8.2.2" {
		t.Fatalf("first check = %+v, %v", b, err)
	}
	// Same size and mtime, different output: the cache answers, so the
	// binary is not run again.
	st, _ := os.Stat(bin)
	script := "#!/bin/sh\nprintf '%s\\n' 'QEMU emulator version 8.2.3'\n"
	if len(script) != int(st.Size()) {
		t.Fatalf("test script sizes differ: %d vs %d", len(script), st.Size())
	}
	os.WriteFile(bin, []byte(script), 0o755)
	os.Chtimes(bin, st.ModTime(), st.ModTime())
	if b, err := findBinary(ctx, bin, archX86_64, cache); err != nil || b.Version.String() != "8.2.2" {
		t.Errorf("cached check = %+v, %v; want the cached 8.2.2", b, err)
	}
	// An upgraded binary (new mtime) is checked again.
	later := st.ModTime().Add(time.Minute)
	os.Chtimes(bin, later, later)
	if b, err := findBinary(ctx, bin, archX86_64, cache); err != nil || b.Version.String() != "8.2.3" {
		t.Errorf("check after an upgrade = %+v, %v; want 8.2.3", b, err)
	}
	// A cached too-old version is still refused.
	old := fakeQEMU(t, "QEMU emulator version 6.2.0")
	for range 2 {
		if _, err := findBinary(ctx, old, archX86_64, cache); err == nil || !strings.Contains(err.Error(), "7.1 or newer") {
			t.Errorf("old QEMU: err = %v", err)
		}
	}
}
