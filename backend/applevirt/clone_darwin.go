package applevirt

import "golang.org/x/sys/unix"

// cloneFile makes dst a clone of src (APFS: instant, sharing blocks until
// either is written), or a copy where cloning is not supported.
func cloneFile(src, dst string) error {
	if err := unix.Clonefile(src, dst, unix.CLONE_NOFOLLOW); err == nil {
		return nil
	}
	return copyFile(src, dst)
}
