package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// listedPackage is the part of `go list -json` output the checker reads.
type listedPackage struct {
	ImportPath string
	Dir        string
	Standard   bool
	DepOnly    bool
	GoFiles    []string
	CgoFiles   []string
	ImportMap  map[string]string
	Module     *struct {
		Path      string
		GoVersion string
	}
	Error *struct {
		Err string
	}
}

// Options says what to check and how.
type Options struct {
	// Dir is where `go list` runs (inside the module to check).
	Dir string
	// GOOS and GOARCH select the target; CGO_ENABLED is always 1.
	GOOS, GOARCH string
	// Patterns are the package patterns to check, such as "./...".
	Patterns []string
	// Module is the path prefix whose packages' errors are reported; the
	// main module's path when empty.
	Module string
}

// Diagnostic is one type error in a checked package.
type Diagnostic struct {
	Pos     token.Position
	Message string
}

func (d Diagnostic) String() string { return fmt.Sprintf("%s: %s", d.Pos, d.Message) }

// Check lists the packages for the target and type-checks them, their
// dependencies first. It returns the type errors found in the packages of
// the module; errors in dependencies are not reported (they would be
// artefacts of FakeImportC, which types every C.name as invalid).
func Check(ctx context.Context, opts Options) ([]Diagnostic, error) {
	pkgs, err := goList(ctx, opts)
	if err != nil {
		return nil, err
	}
	module := opts.Module
	if module == "" {
		for _, p := range pkgs {
			if !p.DepOnly && p.Module != nil {
				module = p.Module.Path
				break
			}
		}
	}
	ours := func(p *listedPackage) bool {
		return p.Module != nil && p.Module.Path == module
	}
	fset := token.NewFileSet()
	checked := map[string]*types.Package{"unsafe": types.Unsafe}
	var diags []Diagnostic
	sizes := types.SizesFor("gc", opts.GOARCH)
	if sizes == nil {
		return nil, fmt.Errorf("unknown GOARCH %q: no type sizes for it", opts.GOARCH)
	}
	for _, p := range pkgs {
		if p.ImportPath == "unsafe" {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		mine := ours(p) && !p.DepOnly
		if p.Error != nil && mine {
			diags = append(diags, Diagnostic{Pos: token.Position{Filename: p.Dir}, Message: p.Error.Err})
			continue
		}
		files, perr := parseFiles(fset, p, mine)
		if perr != nil {
			if mine {
				diags = append(diags, Diagnostic{Pos: token.Position{Filename: p.Dir}, Message: perr.Error()})
			}
			continue
		}
		var pkgErrs []Diagnostic
		conf := types.Config{
			FakeImportC: true,
			// Only the packages checked need their function bodies;
			// dependencies need only their declarations.
			IgnoreFuncBodies: !mine,
			Sizes:            sizes,
			Importer:         mapImporter{checked: checked, importMap: p.ImportMap, from: p.ImportPath},
			Error: func(err error) {
				if !mine {
					return
				}
				d := Diagnostic{Message: err.Error()}
				var te types.Error
				if errors.As(err, &te) {
					d = Diagnostic{Pos: te.Fset.Position(te.Pos), Message: te.Msg}
				}
				pkgErrs = append(pkgErrs, d)
			},
		}
		if mine && p.Module != nil && p.Module.GoVersion != "" {
			conf.GoVersion = "go" + p.Module.GoVersion
		}
		tp, _ := conf.Check(p.ImportPath, fset, files, nil)
		checked[p.ImportPath] = tp
		if mine {
			diags = append(diags, pkgErrs...)
		}
	}
	sort.SliceStable(diags, func(i, j int) bool {
		a, b := diags[i].Pos, diags[j].Pos
		if a.Filename != b.Filename {
			return a.Filename < b.Filename
		}
		return a.Line < b.Line
	})
	return diags, nil
}

// goList runs `go list -deps -json` for the target. Listing with
// CGO_ENABLED=1 needs no C compiler: nothing is built.
func goList(ctx context.Context, opts Options) ([]*listedPackage, error) {
	args := append([]string{"list", "-e", "-deps", "-json=ImportPath,Dir,Standard,DepOnly,GoFiles,CgoFiles,ImportMap,Module,Error", "--"}, opts.Patterns...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = opts.Dir
	cmd.Env = append(os.Environ(), "GOOS="+opts.GOOS, "GOARCH="+opts.GOARCH, "CGO_ENABLED=1", "GOFLAGS=-mod=readonly")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list for %s/%s: %w: %s", opts.GOOS, opts.GOARCH, err, strings.TrimSpace(stderr.String()))
	}
	var pkgs []*listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		p := new(listedPackage)
		if err := dec.Decode(p); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("decode go list output: %w", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs, nil
}

// parseFiles parses a package's Go and cgo files; comments are kept only
// where they matter (the checked packages, for positions of errors).
func parseFiles(fset *token.FileSet, p *listedPackage, mine bool) ([]*ast.File, error) {
	mode := parser.SkipObjectResolution
	if mine {
		mode |= parser.ParseComments
	}
	var files []*ast.File
	for _, name := range append(append([]string(nil), p.GoFiles...), p.CgoFiles...) {
		f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, mode)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", name, err)
		}
		files = append(files, f)
	}
	return files, nil
}

// mapImporter resolves an import of one package to the package already
// checked, through that package's ImportMap (vendored standard library
// paths).
type mapImporter struct {
	checked   map[string]*types.Package
	importMap map[string]string
	from      string
}

func (m mapImporter) Import(path string) (*types.Package, error) {
	if p, ok := m.importMap[path]; ok {
		path = p
	}
	if tp, ok := m.checked[path]; ok && tp != nil {
		return tp, nil
	}
	return nil, fmt.Errorf("%s imports %s, which go list did not list before it", m.from, path)
}
