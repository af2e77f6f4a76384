package main

import (
	"fmt"
	"path/filepath"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/vm/spec"
)

// specFileFields lists the top-level fields a spec file sets.
func specFileFields(data []byte) ([]string, error) {
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("bad spec: %w", err)
	}
	var out []string
	for k := range m {
		if k != "name" {
			out = append(out, k)
		}
	}
	return out, nil
}

// specFields renders a spec as a map keyed by its spec.yaml field names.
func specFields(s *spec.Spec) (map[string]any, error) {
	data, err := s.Marshal()
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("decode spec: %w", err)
	}
	return m, nil
}

// specDiff compares the fields the user set (fields) in want with the
// existing VM's spec, returning one "field: VM has X, asked for Y" per
// difference.
func specDiff(vm *api.VM, want *spec.Spec, fields []string) ([]string, error) {
	if len(fields) == 0 {
		return nil, nil
	}
	if vm.Spec == nil {
		return nil, fmt.Errorf("VM %s has an unreadable spec (%s): fix or remove it (mb rm %s)", vm.Name, orDash(vm.Reason), vm.Name)
	}
	data, err := yaml.Marshal(vm.Spec)
	if err != nil {
		return nil, fmt.Errorf("encode VM %s's spec: %w", vm.Name, err)
	}
	have, err := spec.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("VM %s's spec: %w", vm.Name, err)
	}
	have.SetDefaults()
	w := *want
	w.SetDefaults()
	hm, err := specFields(have)
	if err != nil {
		return nil, err
	}
	wm, err := specFields(&w)
	if err != nil {
		return nil, err
	}
	var diffs []string
	for _, f := range fields {
		if !reflect.DeepEqual(hm[f], wm[f]) {
			diffs = append(diffs, fmt.Sprintf("%s (the VM has %s, you asked for %s)", f, show(hm[f]), show(wm[f])))
		}
	}
	return diffs, nil
}

func show(v any) string {
	if v == nil {
		return "none"
	}
	b, err := yaml.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	s := strings.TrimSpace(string(b))
	s = strings.ReplaceAll(s, "\n", " ")
	// An error is one line a person reads: long values (user_data) are cut.
	if r := []rune(s); len(r) > 80 {
		s = string(r[:77]) + "..."
	}
	return s
}

func joinDiffs(d []string) string { return strings.Join(d, "; ") }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// absPath makes a file path given on the command line absolute, since the
// daemon and vmhost run elsewhere.
func absPath(p *string) error {
	if *p == "" {
		return nil
	}
	a, err := filepath.Abs(*p)
	if err != nil {
		return err
	}
	*p = a
	return nil
}

// specFromFields is specFields' inverse.
func specFromFields(m map[string]any) (*spec.Spec, error) {
	data, err := yaml.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode spec: %w", err)
	}
	return spec.Parse(data)
}
