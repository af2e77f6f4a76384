package qemu

import (
	"strings"
	"testing"

	"github.com/mbvm/mb/agent/guestinit"
	"github.com/mbvm/mb/vm/spec"
)

// Shares give QEMU shared memory and a vhost-user-fs device each, and the
// guest a mb.shares parameter it parses back.
func TestShareArgsAndCmdline(t *testing.T) {
	dir := t.TempDir()
	s := &spec.Spec{Name: "v", Shares: []spec.Share{{Host: dir, Guest: "/src"}, {Host: dir, Guest: "/docs/", ReadOnly: true, Tag: "docs"}}}
	shares, err := resolveShares(s)
	if err != nil {
		t.Fatal(err)
	}
	c := &bootConfig{Dir: "/vm", MemoryMiB: 512, Shares: shares}
	args := strings.Join(shareArgs(c), " ")
	for _, want := range []string{"memory-backend-memfd,id=mbshmem,size=512M,share=on", "-numa node,memdev=mbshmem",
		"socket,id=vfs0,path=/vm/virtiofs0.sock", "vhost-user-fs-pci,queue-size=1024,chardev=vfs1,tag=docs"} {
		if !strings.Contains(args, want) {
			t.Errorf("args lack %q: %s", want, args)
		}
	}
	// With the VM's RAM in its shared memory file (warm start), that file
	// is what virtiofsd maps: no second memory backend.
	c.Warm = warmConfig{MemPath: "/vm/memory.ram", Shared: true}
	full := strings.Join(buildArgs(c), " ")
	if n := strings.Count(full, "memory-backend"); n != 2 || strings.Contains(full, "-numa") ||
		!strings.Contains(full, "memory-backend-file,id=mem0,size=512M,mem-path=/vm/memory.ram,share=on") {
		t.Errorf("shares with the warm-start memory file: want the one shared file backend (named on -machine), got: %s", full)
	}
	p := sharesCmdline(shares)
	got, err := guestinit.ParseShares(strings.TrimPrefix(p, guestinit.SharesParam+"="))
	if err != nil || len(got) != 2 || got[0] != (guestinit.Share{Tag: "mb-share-0", Path: "/src"}) || got[1] != (guestinit.Share{Tag: "docs", Path: "/docs", ReadOnly: true}) {
		t.Errorf("%s parsed back as %+v, %v", p, got, err)
	}
	if shareArgs(&bootConfig{}) != nil || sharesCmdline(nil) != "" {
		t.Errorf("a VM without shares gets share arguments")
	}
	s.Shares[0].Guest = "/a,b"
	if _, err := resolveShares(s); err == nil {
		t.Errorf("a guest path with a comma was accepted")
	}
}
