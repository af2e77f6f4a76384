// Command mini-modorder is a build helper of scripts/mkimage-mini.sh. Given
// an extracted kernel module tree (/lib/modules/<release>), it writes
// modules.dep when the tree has none (Debian's kernel package leaves that to
// depmod at install time; this reads each module's .modinfo "depends="
// instead, so the build needs no kmod and works for any architecture), then
// prints the load order of the wanted modules and their dependencies, one
// path per line, dependencies first. Wanted modules that are built into the
// kernel (modules.builtin) are skipped with a note on stderr, and so are
// optional ones (written "?name") that the kernel does not have at all.
//
//	go run ./scripts/mini-modorder -tree DIR virtio_pci virtio_net ?gpio_keys ...
package main

import (
	"bufio"
	"bytes"
	"debug/elf"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/mbvm/mb/agent/guestinit"
)

func main() {
	tree := flag.String("tree", "", "module tree: the /lib/modules/<release> directory")
	flag.Parse()
	if err := run(os.Stdout, os.Stderr, *tree, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "mini-modorder:", err)
		os.Exit(1)
	}
}

func run(stdout, stderr io.Writer, tree string, wanted []string) error {
	if tree == "" {
		return fmt.Errorf("-tree is required")
	}
	depPath := filepath.Join(tree, "modules.dep")
	if _, err := os.Stat(depPath); os.IsNotExist(err) {
		if err := writeModulesDep(tree, depPath); err != nil {
			return err
		}
	}
	f, err := os.Open(depPath)
	if err != nil {
		return fmt.Errorf("open modules.dep: %w", err)
	}
	defer f.Close()
	dep, err := guestinit.ParseModulesDep(f)
	if err != nil {
		return err
	}
	builtin, err := readBuiltin(filepath.Join(tree, "modules.builtin"))
	if err != nil {
		return err
	}
	var mods []string
	for _, w := range wanted {
		w, optional := strings.CutPrefix(w, "?")
		if optional && dep.ByName[guestinit.ModuleName(w)] == "" && !builtin[guestinit.ModuleName(w)] {
			fmt.Fprintf(stderr, "mini-modorder: optional module %s is not in this kernel, skipped\n", w)
			continue
		}
		if builtin[guestinit.ModuleName(w)] {
			fmt.Fprintf(stderr, "mini-modorder: %s is built into the kernel, not loaded\n", w)
			continue
		}
		mods = append(mods, w)
	}
	order, err := dep.LoadOrder(mods...)
	if err != nil {
		return err
	}
	for _, p := range order {
		fmt.Fprintln(stdout, p)
	}
	return nil
}

func readBuiltin(path string) (map[string]bool, error) {
	out := map[string]bool{}
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read modules.builtin: %w", err)
	}
	for _, l := range strings.Fields(string(data)) {
		out[guestinit.ModuleName(l)] = true
	}
	return out, nil
}

// writeModulesDep writes modules.dep in depmod's format, each module
// followed by all of its dependencies, direct and indirect.
func writeModulesDep(tree, depPath string) error {
	direct := map[string][]string{} // path -> dependency names
	byName := map[string]string{}
	err := filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(p, ".ko") {
			return nil
		}
		rel, err := filepath.Rel(tree, p)
		if err != nil {
			return err
		}
		deps, err := modinfoDepends(p)
		if err != nil {
			return err
		}
		direct[rel] = deps
		byName[guestinit.ModuleName(rel)] = rel
		return nil
	})
	if err != nil {
		return fmt.Errorf("scan modules under %s (compressed modules must be decompressed first): %w", tree, err)
	}
	paths := make([]string, 0, len(direct))
	for p := range direct {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	var buf bytes.Buffer
	for _, p := range paths {
		seen := map[string]bool{}
		var all []string
		var walk func(string) error
		walk = func(q string) error {
			for _, name := range direct[q] {
				dp, ok := byName[guestinit.ModuleName(name)]
				if !ok {
					return fmt.Errorf("%s depends on %s, which is not in the tree", q, name)
				}
				if seen[dp] {
					continue
				}
				seen[dp] = true
				all = append(all, dp)
				if err := walk(dp); err != nil {
					return err
				}
			}
			return nil
		}
		if err := walk(p); err != nil {
			return err
		}
		fmt.Fprintf(&buf, "%s:", p)
		for _, dp := range all {
			fmt.Fprintf(&buf, " %s", dp)
		}
		buf.WriteByte('\n')
	}
	tmp := depPath + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write modules.dep: %w", err)
	}
	if err := os.Rename(tmp, depPath); err != nil {
		return fmt.Errorf("write modules.dep: %w", err)
	}
	return nil
}

// modinfoDepends returns the "depends=" list of a module's .modinfo section.
func modinfoDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read module %s: %w", path, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("module %s has no .modinfo section", path)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("read .modinfo of %s: %w", path, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Split(splitNUL)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "depends="); ok {
			if v == "" {
				return nil, nil
			}
			return strings.Split(v, ","), nil
		}
	}
	return nil, nil
}

func splitNUL(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, 0); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}
