package spec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// hostFiles returns the spec's fields that name files on the host, with
// their spec.yaml names.
func (s *Spec) hostFiles() []struct {
	field string
	path  *string
} {
	return []struct {
		field string
		path  *string
	}{{"kernel", &s.Kernel}, {"initrd", &s.Initrd}, {"disk", &s.Disk}}
}

// ResolvePaths makes relative kernel, initrd and disk paths absolute,
// taking them relative to base: the directory of the spec file they were
// read from, so a spec file can name files beside it.
func (s *Spec) ResolvePaths(base string) {
	for _, f := range s.hostFiles() {
		if *f.path != "" && !filepath.IsAbs(*f.path) {
			*f.path = filepath.Join(base, *f.path)
		}
	}
}

// CheckFiles checks that the kernel, initrd and disk the spec names are
// absolute paths of existing files, and that an absolute qemu_binary is an
// executable file; it returns every problem found, each naming the field
// and what to do.
func (s *Spec) CheckFiles() error {
	var errs []error
	for _, f := range s.hostFiles() {
		p := *f.path
		if p == "" {
			continue
		}
		if !filepath.IsAbs(p) {
			errs = append(errs, fmt.Errorf("%s %q: use an absolute path", f.field, p))
			continue
		}
		st, err := os.Stat(p)
		switch {
		case errors.Is(err, os.ErrNotExist):
			errs = append(errs, fmt.Errorf("%s %s: no such file: fix the path (or boot an image with --image)", f.field, p))
		case err != nil:
			errs = append(errs, fmt.Errorf("%s %s: %w", f.field, p, err))
		case st.IsDir():
			errs = append(errs, fmt.Errorf("%s %s: is a directory, want a file", f.field, p))
		}
	}
	if p := s.QEMUBinary; filepath.IsAbs(p) {
		st, err := os.Stat(p)
		switch {
		case errors.Is(err, os.ErrNotExist):
			errs = append(errs, fmt.Errorf("qemu_binary %s: no such file: fix the path, or remove qemu_binary to use the QEMU on the daemon's PATH", p))
		case err != nil:
			errs = append(errs, fmt.Errorf("qemu_binary %s: %w", p, err))
		case !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0:
			errs = append(errs, fmt.Errorf("qemu_binary %s: not an executable file", p))
		}
	}
	return errors.Join(errs...)
}
