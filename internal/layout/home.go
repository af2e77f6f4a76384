// Package layout locates mb's state directory ($MB_HOME, default ~/.mb) and
// the files inside it.
package layout

import (
	"fmt"
	"os"
	"path/filepath"
)

// Env is the environment variable that overrides the state directory.
const Env = "MB_HOME"

// Dir returns $MB_HOME, or ~/.mb when it is unset, as an absolute path.
func Dir() (string, error) {
	if d := os.Getenv(Env); d != "" {
		abs, err := filepath.Abs(d)
		if err != nil {
			return "", fmt.Errorf("resolve %s=%q: %w", Env, d, err)
		}
		return abs, nil
	}
	h, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find the home directory (set %s to choose mb's state directory): %w", Env, err)
	}
	return filepath.Join(h, ".mb"), nil
}

// VMsDir is the directory holding one directory per VM.
func VMsDir(home string) string { return filepath.Join(home, "vms") }

// VMDir is the directory of the named VM.
func VMDir(home, name string) string { return filepath.Join(home, "vms", name) }

// ImagesDir is the image cache.
func ImagesDir(home string) string { return filepath.Join(home, "images") }

// ImageDir is the directory of the named image.
func ImageDir(home, name string) string { return filepath.Join(home, "images", name) }

// Ensure creates dir (and parents) with mode 0700 and checks it, without
// changing an existing directory: see EnsureDir.
func Ensure(dir string) error { return EnsureDir(dir) }
