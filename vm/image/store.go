package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/sys/unix"

	"github.com/mbvm/mb/internal/atomicfile"
	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/internal/lockfile"
)

// ErrExists means an image of that name is already in the cache.
var ErrExists = errors.New("image already exists")

// lockPath is the lock serialising changes to the named image.
func lockPath(mbHome, name string) string {
	return filepath.Join(layout.ImagesDir(mbHome), "."+name+".lock")
}

// LockPath is the lock file of the named image: pull, import and removal
// hold it exclusively (Lock), VM create and start hold it shared (Share),
// and `make image` (scripts/mkimage-mini.sh) takes it with flock(1) while it
// writes the image.
func LockPath(mbHome, name string) string { return lockPath(mbHome, name) }

// Lock takes the named image's lock exclusively, waiting while anyone holds
// it, until ctx ends. Callers change the image while they hold it.
func Lock(ctx context.Context, mbHome, name string) (*lockfile.Lock, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	return lockImage(ctx, mbHome, name)
}

// Share takes the named image's lock shared, waiting while it is held
// exclusively (a pull, an import, a removal), until ctx ends: VMs being
// created or started from the image hold it, so the image cannot be removed
// or replaced under them, while any number of them proceed together. Call
// the returned function to release it.
func Share(ctx context.Context, mbHome, name string) (release func(), err error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if err := layout.Ensure(layout.ImagesDir(mbHome)); err != nil {
		return nil, err
	}
	p := lockPath(mbHome, name)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock image %q: %w", name, err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock image %q: %w", name, err)
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, fmt.Errorf("image %q is busy (being pulled, imported or removed): %w", name, ctx.Err())
		case <-t.C:
		}
	}
}

// lockImage takes the image's lock, waiting while another mb holds it
// (another pull of the same image), until ctx ends.
func lockImage(ctx context.Context, mbHome, name string) (*lockfile.Lock, error) {
	if err := layout.Ensure(layout.ImagesDir(mbHome)); err != nil {
		return nil, err
	}
	for {
		l, err := lockfile.Acquire(lockPath(mbHome, name))
		if err == nil {
			return l, nil
		}
		if !errors.Is(err, lockfile.ErrLocked) {
			return nil, fmt.Errorf("lock image %q: %w", name, err)
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("image %q is busy (%v): %w", name, err, ctx.Err())
		case <-t.C:
		}
	}
}

// staging is an image directory being built beside its final place.
type staging struct {
	dir   string
	final string
}

// newStaging makes a hidden temporary directory in the image cache.
func newStaging(mbHome, name string) (*staging, error) {
	s := &staging{final: layout.ImageDir(mbHome, name)}
	dir, err := os.MkdirTemp(layout.ImagesDir(mbHome), ".tmp-"+name+"-")
	if err != nil {
		return nil, fmt.Errorf("create image %q: %w", name, err)
	}
	s.dir = dir
	return s, nil
}

// discard removes the staging directory; a no-op after commit.
func (s *staging) discard() {
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}

// commit writes the manifest and renames the directory into place.
func (s *staging) commit(m *Manifest) (*Manifest, error) {
	data, err := yaml.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode image manifest: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(s.dir, ManifestName), data, 0o644); err != nil {
		return nil, err
	}
	if err := os.Chmod(s.dir, 0o755); err != nil {
		return nil, fmt.Errorf("create image %q: %w", m.Name, err)
	}
	if err := os.Rename(s.dir, s.final); err != nil {
		return nil, fmt.Errorf("create image %q: %w", m.Name, err)
	}
	s.dir = ""
	return LoadDir(s.final)
}

// exists reports whether the named image directory exists.
func exists(mbHome, name string) bool {
	_, err := os.Stat(layout.ImageDir(mbHome, name))
	return err == nil
}

// copyFile copies src to dst (created with mode perm), also writing every
// byte to also (a hash) when it is not nil, and returns the bytes written.
func copyFile(ctx context.Context, src, dst string, perm os.FileMode, also io.Writer) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return 0, err
	}
	var w io.Writer = out
	if also != nil {
		w = io.MultiWriter(out, also)
	}
	n, err := io.Copy(w, &ctxReader{ctx: ctx, r: in})
	if err != nil {
		out.Close()
		return n, err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return n, err
	}
	return n, out.Close()
}

// ctxReader ends a copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
