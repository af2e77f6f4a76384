package image

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/vm/spec"
)

func TestListAndRemove(t *testing.T) {
	data := qcow2Bytes(t)
	dir := t.TempDir()
	mbHome := t.TempDir()
	if _, err := Import(testCtx(t), mbHome, ImportOptions{Name: "deb", Disk: writeFile(t, dir, "d.qcow2", data)}); err != nil {
		t.Fatal(err)
	}
	if _, err := Import(testCtx(t), mbHome, ImportOptions{Name: "mini", Kernel: writeFile(t, dir, "k", []byte("kernel"))}); err != nil {
		t.Fatal(err)
	}
	// A broken image is listed with its problem.
	if err := os.MkdirAll(layout.ImageDir(mbHome, "broken"), 0o755); err != nil {
		t.Fatal(err)
	}
	vms := []*spec.Spec{
		{Name: "b", Image: "deb"},
		{Name: "a", Image: "deb"},
		{Name: "c", Disk: filepath.Join(layout.ImageDir(mbHome, "mini"), "k")},
		{Name: "d", Image: "other"},
	}
	entries, err := List(testCtx(t), mbHome, vms)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		t.Fatalf("entries %+v, want broken, deb, mini", entries)
	}
	broken, deb, mini := entries[0], entries[1], entries[2]
	if broken.Name != "broken" || !strings.Contains(broken.Error, "not found") {
		t.Errorf("broken entry %+v", broken)
	}
	if deb.Name != "deb" || deb.Format != "qcow2" || deb.VirtualSize != 16<<20 || deb.SHA256 != sha(data) ||
		deb.Size < int64(len(data)) || !reflect.DeepEqual(deb.UsedBy, []string{"a", "b"}) {
		t.Errorf("deb entry %+v", deb)
	}
	if mini.Format != "kernel" || !mini.Kernel || !reflect.DeepEqual(mini.UsedBy, []string{"c"}) {
		t.Errorf("mini entry %+v", mini)
	}

	if err := Remove(testCtx(t), mbHome, "deb", func() []*spec.Spec { return vms }); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "a, b") {
		t.Errorf("remove in use: err = %v, want ErrInUse naming a, b", err)
	}
	if _, err := Load(mbHome, "deb"); err != nil {
		t.Errorf("a refused remove damaged the image: %v", err)
	}
	if err := Remove(testCtx(t), mbHome, "deb", func() []*spec.Spec { return vms[2:] }); err != nil {
		t.Fatal(err)
	}
	if err := Remove(testCtx(t), mbHome, "deb", func() []*spec.Spec { return nil }); !errors.Is(err, ErrNotFound) {
		t.Errorf("second remove: err = %v, want ErrNotFound", err)
	}
	entries, err = List(testCtx(t), mbHome, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[0].Name != "broken" || entries[1].Name != "mini" {
		t.Errorf("after remove: %+v", entries)
	}
	assertNoLeftovers(t, mbHome, "broken", "mini")
}

func TestListEmptyCache(t *testing.T) {
	entries, err := List(testCtx(t), t.TempDir(), nil)
	if err != nil || len(entries) != 0 {
		t.Errorf("List of a fresh home: %v, %v", entries, err)
	}
}

// An image linked into the cache (as the test rigs link the prebuilt mini
// image) is listed, and removing it removes the link, not what it points at.
func TestListAndRemoveLinkedImage(t *testing.T) {
	data := qcow2Bytes(t)
	elsewhere := t.TempDir()
	if _, err := Import(testCtx(t), elsewhere, ImportOptions{Name: "deb", Disk: writeFile(t, t.TempDir(), "d.qcow2", data)}); err != nil {
		t.Fatal(err)
	}
	mbHome := t.TempDir()
	if err := os.MkdirAll(layout.ImagesDir(mbHome), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(layout.ImageDir(elsewhere, "deb"), layout.ImageDir(mbHome, "deb")); err != nil {
		t.Fatal(err)
	}
	entries, err := List(testCtx(t), mbHome, nil)
	if err != nil || len(entries) != 1 || entries[0].Name != "deb" || entries[0].Format != "qcow2" {
		t.Fatalf("List with a linked image: %+v, %v", entries, err)
	}
	if err := Remove(testCtx(t), mbHome, "deb", func() []*spec.Spec { return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(layout.ImageDir(mbHome, "deb")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the link is still there: %v", err)
	}
	if _, err := Load(elsewhere, "deb"); err != nil {
		t.Errorf("removing the link damaged the image it pointed at: %v", err)
	}
}
