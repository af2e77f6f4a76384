//go:build !darwin

package applevirt

// cloneFile copies src to dst (APFS clones are macOS only).
func cloneFile(src, dst string) error { return copyFile(src, dst) }
