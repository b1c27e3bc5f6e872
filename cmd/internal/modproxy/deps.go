package main

import (
	"errors"
	"flag"
	"fmt"
	"maps"
	"slices"
	"strings"

	"golang.org/x/mod/semver"
)

func depsCmd(args []string) error {
	fs := flag.NewFlagSet("deps", flag.ContinueOnError)
	root := fs.String("root", ".", "the workspace root (holding go.work)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	mods, err := loadWorkspace(*root)
	if err != nil {
		return err
	}
	if err := checkDeps(mods); err != nil {
		return err
	}
	fmt.Printf("modproxy: %d modules, one version of every dependency, no replace\n", len(mods))
	return nil
}

// checkDeps reports every dependency two modules require at different
// versions, every sibling required at another version than the others,
// and every replace directive.
func checkDeps(mods []*workModule) error {
	paths := map[string]bool{}
	for _, m := range mods {
		paths[m.path] = true
	}
	// dependency -> version -> modules (relative dirs) requiring it
	uses := map[string]map[string][]string{}
	var errs []error
	for _, m := range mods {
		for _, r := range m.file.Replace {
			errs = append(errs, fmt.Errorf("%s/go.mod: replace %s => %s %s (the committed go.work wires the workspace; a go.mod must not)",
				m.rel, r.Old.Path, r.New.Path, r.New.Version))
		}
		for _, r := range m.file.Require {
			dep := r.Mod.Path
			if paths[dep] {
				dep = "the workspace modules" // all siblings at one version
			}
			if uses[dep] == nil {
				uses[dep] = map[string][]string{}
			}
			uses[dep][r.Mod.Version] = append(uses[dep][r.Mod.Version], m.rel+" ("+r.Mod.Path+")")
		}
	}
	for _, dep := range slices.Sorted(maps.Keys(uses)) {
		byVersion := uses[dep]
		if len(byVersion) < 2 {
			continue
		}
		versions := slices.SortedFunc(maps.Keys(byVersion), semver.Compare)
		var parts []string
		for _, v := range versions {
			users := byVersion[v]
			if dep != "the workspace modules" {
				for i, u := range users {
					users[i], _, _ = strings.Cut(u, " (")
				}
			}
			parts = append(parts, fmt.Sprintf("%s in %s", v, strings.Join(users, ", ")))
		}
		hint := fmt.Sprintf("align them on the newest: go get %s@%s in the others, then make tidy", dep, versions[len(versions)-1])
		if dep == "the workspace modules" {
			hint = "require every sibling at the release version (RELEASE_VERSION in the Makefile, go.work's replace block)"
		}
		errs = append(errs, fmt.Errorf("%s: %d versions: %s (%s)", dep, len(versions), strings.Join(parts, "; "), hint))
	}
	return errors.Join(errs...)
}
