package guestinit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// ModulesDep is a parsed modules.dep: for every module path (relative to
// /lib/modules/<release>), the paths of the modules it needs.
type ModulesDep struct {
	// Deps maps a module path to the paths it depends on, as listed.
	Deps map[string][]string
	// ByName maps a module name (see ModuleName) to its path.
	ByName map[string]string
}

// ModuleName returns the kernel's name for a module file: the base name
// without .ko and a compression suffix, with '-' written as '_'
// ("kernel/drivers/misc/pvpanic/pvpanic-pci.ko.xz" is "pvpanic_pci").
func ModuleName(p string) string {
	b := path.Base(p)
	for _, suf := range []string{".xz", ".zst", ".gz"} {
		b = strings.TrimSuffix(b, suf)
	}
	b = strings.TrimSuffix(b, ".ko")
	return strings.ReplaceAll(b, "-", "_")
}

// ParseModulesDep reads modules.dep as depmod writes it: one
// "path: dep dep ..." line per module.
func ParseModulesDep(r io.Reader) (*ModulesDep, error) {
	d := &ModulesDep{Deps: map[string][]string{}, ByName: map[string]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		mod, deps, ok := strings.Cut(text, ":")
		if !ok || strings.TrimSpace(mod) == "" {
			return nil, fmt.Errorf("modules.dep line %d: %q is not \"path: deps\"", line, text)
		}
		mod = strings.TrimSpace(mod)
		d.Deps[mod] = strings.Fields(deps)
		d.ByName[ModuleName(mod)] = mod
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read modules.dep: %w", err)
	}
	return d, nil
}

// LoadOrder returns the paths of the wanted modules (by name, '-' or '_')
// and everything they depend on, each once, every module after all of its
// dependencies (virtio_ring before virtio before virtio_pci), in a stable
// order. An unknown module name or a dependency cycle is an error.
func (d *ModulesDep) LoadOrder(wanted ...string) ([]string, error) {
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var order []string
	var visit func(p string, chain []string) error
	visit = func(p string, chain []string) error {
		switch state[p] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("modules.dep has a dependency cycle: %s -> %s", strings.Join(chain, " -> "), p)
		}
		deps, ok := d.Deps[p]
		if !ok {
			return fmt.Errorf("module %s is needed by %s but has no line in modules.dep (regenerate modules.dep)", p, strings.Join(chain, " -> "))
		}
		state[p] = visiting
		for _, dep := range deps {
			if err := visit(dep, append(chain, p)); err != nil {
				return err
			}
		}
		state[p] = done
		order = append(order, p)
		return nil
	}
	var errs []error
	for _, name := range wanted {
		p, ok := d.ByName[ModuleName(name)]
		if !ok {
			errs = append(errs, fmt.Errorf("module %q is not in modules.dep (is it built into the kernel? see modules.builtin)", name))
			continue
		}
		if err := visit(p, nil); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return order, nil
}
