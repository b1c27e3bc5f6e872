package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/mod/modfile"
)

// workModule is one module of the workspace.
type workModule struct {
	dir   string // absolute
	rel   string // relative to the workspace root, slash-separated
	path  string // module path
	gomod []byte
	file  *modfile.File
}

// loadWorkspace reads root/go.work and the go.mod of every module it uses.
func loadWorkspace(root string) ([]*workModule, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	wpath := filepath.Join(root, "go.work")
	raw, err := os.ReadFile(wpath)
	if err != nil {
		return nil, err
	}
	wf, err := modfile.ParseWork(wpath, raw, nil)
	if err != nil {
		return nil, err
	}
	var mods []*workModule
	for _, u := range wf.Use {
		dir := filepath.Join(root, filepath.FromSlash(u.Path))
		gpath := filepath.Join(dir, "go.mod")
		data, err := os.ReadFile(gpath)
		if err != nil {
			return nil, err
		}
		f, err := modfile.Parse(gpath, data, nil)
		if err != nil {
			return nil, err
		}
		if f.Module == nil {
			return nil, fmt.Errorf("%s: no module line", gpath)
		}
		rel, err := filepath.Rel(root, dir)
		if err != nil {
			return nil, err
		}
		mods = append(mods, &workModule{dir: dir, rel: filepath.ToSlash(rel), path: f.Module.Mod.Path, gomod: data, file: f})
	}
	slices.SortFunc(mods, func(a, b *workModule) int {
		switch {
		case a.path < b.path:
			return -1
		case a.path > b.path:
			return 1
		}
		return 0
	})
	return mods, nil
}

// siblingsOf returns the workspace modules m requires directly.
func siblingsOf(m *workModule, byPath map[string]*workModule) []*workModule {
	var out []*workModule
	for _, r := range m.file.Require {
		if s := byPath[r.Mod.Path]; s != nil {
			out = append(out, s)
		}
	}
	return out
}

// dependencyOrder returns mods with every module after the siblings it
// requires: the order in which they are tagged. A cycle is an error.
func dependencyOrder(mods []*workModule) ([]*workModule, error) {
	byPath := map[string]*workModule{}
	for _, m := range mods {
		byPath[m.path] = m
	}
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var order []*workModule
	var visit func(m *workModule, chain []string) error
	visit = func(m *workModule, chain []string) error {
		switch state[m.path] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("module cycle: %v -> %s", chain, m.path)
		}
		state[m.path] = visiting
		for _, s := range siblingsOf(m, byPath) {
			if err := visit(s, append(chain, m.path)); err != nil {
				return err
			}
		}
		state[m.path] = done
		order = append(order, m)
		return nil
	}
	for _, m := range mods {
		if err := visit(m, nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}
