package spec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSharesValidate(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	t.Setenv("HOME", home)
	if err := os.Mkdir(filepath.Join(home, "src"), 0o700); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		shares []Share
		want   string // "" means valid
	}{
		{[]Share{{Host: dir, Guest: "/mnt/a"}}, ""},
		{[]Share{{Host: "~/src", Guest: "/mnt/src", ReadOnly: true, Tag: "src"}}, ""},
		{[]Share{{Host: dir, Guest: "/mnt/a"}, {Host: dir, Guest: "/mnt/b"}}, ""},
		{[]Share{{Host: "rel/dir", Guest: "/mnt/a"}}, "use an absolute path or one starting with ~/"},
		{[]Share{{Host: "", Guest: "/mnt/a"}}, "host is empty"},
		{[]Share{{Host: filepath.Join(dir, "missing"), Guest: "/mnt/a"}}, "does not exist"},
		{[]Share{{Host: "~/missing", Guest: "/mnt/a"}}, filepath.Join(home, "missing") + " does not exist"},
		{[]Share{{Host: file, Guest: "/mnt/a"}}, "is not a directory"},
		{[]Share{{Host: dir, Guest: "mnt/a"}}, `guest path "mnt/a": use an absolute path`},
		{[]Share{{Host: dir, Guest: "/"}}, "below the root"},
		{[]Share{{Host: dir, Guest: "/mnt/a"}, {Host: dir, Guest: "/mnt/a/"}}, "used by another share"},
		{[]Share{{Host: dir, Guest: "/mnt/a", Tag: "x"}, {Host: dir, Guest: "/mnt/b", Tag: "x"}}, `tag "x" is also the tag of shares[0]`},
		{[]Share{{Host: dir, Guest: "/mnt/a", Tag: "mb-share-1"}, {Host: dir, Guest: "/mnt/b"}}, `tag "mb-share-1" is also the tag`},
		{[]Share{{Host: dir, Guest: "/mnt/a", Tag: "bad tag"}}, `tag "bad tag"`},
		{[]Share{{Host: dir, Guest: "/mnt/a", Tag: strings.Repeat("t", MaxShareTagLen+1)}}, "1 to 36"},
	}
	for _, c := range cases {
		s := &Spec{Name: "vm", Shares: c.shares}
		s.SetDefaults()
		err := s.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: unexpected error %v", c.shares, err)
		case c.want != "" && err == nil:
			t.Errorf("%+v: no error, want %q", c.shares, c.want)
		case c.want != "" && !strings.Contains(err.Error(), c.want):
			t.Errorf("%+v: error %q, want %q", c.shares, err, c.want)
		}
	}
}

func TestSharesRoundTrip(t *testing.T) {
	dir := t.TempDir()
	in := []byte("name: vm\nshares:\n  - host: " + dir + "\n    guest: /mnt/x\n    read_only: true\n    tag: x\n")
	s, err := Parse(in)
	if err != nil {
		t.Fatal(err)
	}
	want := Share{Host: dir, Guest: "/mnt/x", ReadOnly: true, Tag: "x"}
	if len(s.Shares) != 1 || s.Shares[0] != want {
		t.Fatalf("parsed shares %+v, want [%+v]", s.Shares, want)
	}
	out, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s2, err := Parse(out)
	if err != nil || len(s2.Shares) != 1 || s2.Shares[0] != want {
		t.Fatalf("round trip gave %+v, %v", s2, err)
	}
	if _, err := Parse([]byte("name: vm\nshares:\n  - host: /x\n    guest: /y\n    readonly: true\n")); err == nil || !strings.Contains(err.Error(), "readonly") {
		t.Errorf("unknown share field: error %v, want one naming readonly", err)
	}
}
