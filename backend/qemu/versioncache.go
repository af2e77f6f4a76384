package qemu

import (
	"encoding/json"
	"os"
	"path/filepath"
	"time"

	"github.com/mbvm/mb/internal/atomicfile"
)

// versionCacheName is the cache file under $MB_HOME/cache.
const versionCacheName = "qemu-versions.json"

// versionCache remembers the version of each QEMU binary, keyed by path and
// valid while the binary's size and modification time are unchanged (an
// upgrade replaces the file). The zero value caches nothing. The cache is
// only a shortcut: any problem reading or writing it means running
// `--version` again.
type versionCache struct {
	// path is the cache file; empty disables the cache.
	path string
}

// newVersionCache keeps the cache in mbHome/cache.
func newVersionCache(mbHome string) versionCache {
	return versionCache{path: filepath.Join(mbHome, "cache", versionCacheName)}
}

// versionEntry is one binary's cached version.
type versionEntry struct {
	Size    int64       `json:"size"`
	ModTime time.Time   `json:"mtime"`
	Version qemuVersion `json:"version"`
}

func (vc versionCache) load() map[string]versionEntry {
	entries := map[string]versionEntry{}
	if vc.path == "" {
		return entries
	}
	if data, err := os.ReadFile(vc.path); err == nil {
		_ = json.Unmarshal(data, &entries)
	}
	return entries
}

// lookup returns the cached version of the binary at path if it has not
// changed since it was stored.
func (vc versionCache) lookup(path string) (qemuVersion, bool) {
	if vc.path == "" {
		return qemuVersion{}, false
	}
	st, err := os.Stat(path)
	if err != nil {
		return qemuVersion{}, false
	}
	e, ok := vc.load()[path]
	if !ok || e.Size != st.Size() || !e.ModTime.Equal(st.ModTime()) {
		return qemuVersion{}, false
	}
	return e.Version, true
}

// store records the version of the binary at path. Concurrent writers may
// drop each other's entries; that only costs a `--version` run later.
func (vc versionCache) store(path string, v qemuVersion) {
	if vc.path == "" {
		return
	}
	st, err := os.Stat(path)
	if err != nil {
		return
	}
	entries := vc.load()
	entries[path] = versionEntry{Size: st.Size(), ModTime: st.ModTime(), Version: v}
	data, err := json.Marshal(entries)
	if err != nil {
		return
	}
	if err := os.MkdirAll(filepath.Dir(vc.path), 0o700); err != nil {
		return
	}
	_ = atomicfile.Write(vc.path, data, 0o600)
}
