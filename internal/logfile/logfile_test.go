package logfile

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestWriterRotatesAndKeepsAFew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "daemon.log")
	w, err := Open(path, 100, 2)
	if err != nil {
		t.Fatal(err)
	}
	line := bytes.Repeat([]byte("x"), 39)
	line = append(line, '\n')
	for i := 0; i < 20; i++ {
		if _, err := w.Write(line); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + ".1", path + ".2"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if st.Size() > 100 {
			t.Errorf("%s is %d bytes, over the 100-byte cap", p, st.Size())
		}
	}
	if _, err := os.Stat(path + ".3"); !os.IsNotExist(err) {
		t.Errorf("%s.3 exists, want at most 2 old files (err %v)", path, err)
	}
}

func TestCopyTruncateKeepsWriterAppending(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vmhost.log")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString("old line\n")
	if err := RotateIfLarger(path, 4, 3); err != nil {
		t.Fatal(err)
	}
	f.WriteString("new line\n")
	got, _ := os.ReadFile(path)
	if string(got) != "new line\n" {
		t.Errorf("after rotation the log holds %q, want only the new line", got)
	}
	old, _ := os.ReadFile(path + ".1")
	if string(old) != "old line\n" {
		t.Errorf("%s.1 holds %q, want the old line", path, old)
	}
	if err := RotateIfLarger(path, 1<<20, 3); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "new line\n" {
		t.Errorf("a small log was rotated: %q", got)
	}
}
