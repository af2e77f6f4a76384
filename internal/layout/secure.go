package layout

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// ErrInsecure means a directory mb keeps state in is not safe to use: it is
// a symbolic link, another user owns it, or others may write into it, so
// they could plant files (a log symlinked to a file of the user's, a VM
// spec) for mb to write through or to run.
var ErrInsecure = errors.New("unsafe state directory")

// EnsureHome creates $MB_HOME (mode 0700, with its parents) when it is
// missing, and checks it: see EnsureDir. $MB_HOME alone may be a symbolic
// link (~/.mb pointing at a larger disk), provided the current user owns
// the link as well as the directory it leads to.
func EnsureHome(dir string) error {
	fi, err := os.Lstat(dir)
	if err == nil && fi.Mode()&os.ModeSymlink != 0 {
		if err := checkOwner(dir, fi); err != nil {
			return err
		}
		target, err := filepath.EvalSymlinks(dir)
		if err != nil {
			return fmt.Errorf("resolve %s=%s: %w", Env, dir, err)
		}
		return EnsureDir(target)
	}
	return EnsureDir(dir)
}

// EnsureDir creates dir (mode 0700, with its parents) when it is missing,
// and checks what it finds or made: a real directory (not a symbolic link),
// owned by the current user, not writable by group or others. It never
// changes an existing directory's owner or mode: a directory that fails a
// check is refused with an error wrapping ErrInsecure that names the path
// and the fix.
func EnsureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		// MkdirAll fails on a symlink to nowhere, or one to a file: say so.
		if fi, lerr := os.Lstat(dir); lerr == nil && fi.Mode()&os.ModeSymlink != 0 {
			return CheckDir(dir)
		}
		return fmt.Errorf("create %s: %w", dir, err)
	}
	return CheckDir(dir)
}

// CheckDir checks, without following a symbolic link, that dir is a
// directory the current user owns and that group and others cannot write.
func CheckDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("check %s: %w", dir, err)
	}
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		return fmt.Errorf("%w: %s is a symbolic link; mb does not follow links inside its state directory: remove the link (rm %s)", ErrInsecure, dir, dir)
	case !fi.IsDir():
		return fmt.Errorf("%w: %s is not a directory: move it away, or set %s to another directory", ErrInsecure, dir, Env)
	}
	if err := checkOwner(dir, fi); err != nil {
		return err
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%w: %s has mode %04o, so other users may write into it: make it private (chmod 700 %s) if it is yours, or set %s to a directory of your own", ErrInsecure, dir, fi.Mode().Perm(), dir, Env)
	}
	return nil
}

// checkOwner refuses a file another user owns.
func checkOwner(path string, fi os.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if uid := os.Geteuid(); int(st.Uid) != uid {
		return fmt.Errorf("%w: %s belongs to uid %d, not to you (uid %d): set %s to a directory of your own (for example ~/.mb), or remove %s", ErrInsecure, path, st.Uid, uid, Env, path)
	}
	return nil
}
