package main

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"
)

func buildCmd(args []string) error {
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	root := fs.String("root", ".", "the workspace root (holding go.work)")
	version := fs.String("version", "", "the version every module is served at, e.g. v0.2.0")
	out := fs.String("out", "", "the GOPROXY directory to write (its previous content is removed)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !semver.IsValid(*version) || semver.Canonical(*version) != *version {
		return fmt.Errorf("build: -version %q is not a canonical semantic version such as v0.2.0", *version)
	}
	if *out == "" {
		return errors.New("build: -out is required")
	}
	mods, err := loadWorkspace(*root)
	if err != nil {
		return err
	}
	if err := checkSiblingVersions(mods, *version); err != nil {
		return err
	}
	order, err := dependencyOrder(mods)
	if err != nil {
		return err
	}
	tracked, err := gitFiles(*root)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(*out); err != nil {
		return err
	}
	p := &proxyWriter{out: *out, version: *version, tracked: tracked, sums: map[string][]string{}}
	byPath := map[string]*workModule{}
	for _, m := range mods {
		byPath[m.path] = m
	}
	for _, m := range order {
		if err := p.add(m, closure(m, byPath)); err != nil {
			return fmt.Errorf("%s: %w", m.rel, err)
		}
	}
	fmt.Printf("modproxy: %d modules at %s in %s\n", len(order), *version, *out)
	return nil
}

// checkSiblingVersions fails when a module requires a workspace module at
// another version than version.
func checkSiblingVersions(mods []*workModule, version string) error {
	paths := map[string]bool{}
	for _, m := range mods {
		paths[m.path] = true
	}
	var errs []error
	for _, m := range mods {
		for _, r := range m.file.Require {
			if paths[r.Mod.Path] && r.Mod.Version != version {
				errs = append(errs, fmt.Errorf("%s/go.mod requires %s %s, not the workspace version %s", m.rel, r.Mod.Path, r.Mod.Version, version))
			}
		}
	}
	return errors.Join(errs...)
}

// closure returns the workspace modules m depends on, directly or not.
func closure(m *workModule, byPath map[string]*workModule) []*workModule {
	seen := map[string]bool{}
	var out []*workModule
	var walk func(*workModule)
	walk = func(x *workModule) {
		for _, s := range siblingsOf(x, byPath) {
			if !seen[s.path] {
				seen[s.path] = true
				out = append(out, s)
				walk(s)
			}
		}
	}
	walk(m)
	return out
}

// gitFiles returns the files of root's work tree git knows or would add
// (tracked, plus untracked and not ignored), relative and slash-separated;
// nil when root is not a git work tree (every file is then served).
func gitFiles(root string) (map[string]bool, error) {
	cmd := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	cmd.Dir = root
	raw, err := cmd.Output()
	if err != nil {
		if _, statErr := os.Stat(filepath.Join(root, ".git")); statErr != nil {
			return nil, nil
		}
		return nil, fmt.Errorf("git ls-files: %w", err)
	}
	files := map[string]bool{}
	for f := range strings.SplitSeq(string(raw), "\x00") {
		if f != "" {
			files[f] = true
		}
	}
	return files, nil
}

// proxyWriter writes modules into a GOPROXY directory.
type proxyWriter struct {
	out, version string
	tracked      map[string]bool
	sums         map[string][]string // module path -> its two go.sum lines
}

// add zips m at p.version into the proxy; deps are the workspace modules m
// depends on, already added.
func (p *proxyWriter) add(m *workModule, deps []*workModule) error {
	mv := module.Version{Path: m.path, Version: p.version}
	var raw bytes.Buffer
	if err := modzip.CreateFromDir(&raw, mv, m.dir); err != nil {
		return err
	}
	zr, err := zip.NewReader(bytes.NewReader(raw.Bytes()), int64(raw.Len()))
	if err != nil {
		return err
	}
	prefix := mv.Path + "@" + mv.Version + "/"
	var lines []string
	for _, d := range deps {
		lines = append(lines, p.sums[d.path]...)
	}
	var zbuf bytes.Buffer
	zw := zip.NewWriter(&zbuf)
	wroteSum := false
	for _, f := range zr.File {
		name := strings.TrimPrefix(f.Name, prefix)
		if p.tracked != nil && !p.tracked[path.Join(m.rel, name)] {
			continue // ignored by git: a built binary, a test log
		}
		rc, err := f.Open()
		if err != nil {
			return err
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return err
		}
		if name == "go.sum" {
			data = addSumLines(data, lines)
			wroteSum = true
		}
		if err := writeZipFile(zw, f.Name, data); err != nil {
			return err
		}
	}
	if !wroteSum && len(lines) > 0 {
		if err := writeZipFile(zw, prefix+"go.sum", addSumLines(nil, lines)); err != nil {
			return err
		}
	}
	if err := zw.Close(); err != nil {
		return err
	}

	esc, err := module.EscapePath(mv.Path)
	if err != nil {
		return err
	}
	dir := filepath.Join(p.out, filepath.FromSlash(esc), "@v")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	zipPath := filepath.Join(dir, mv.Version+".zip")
	info, err := json.Marshal(struct {
		Version string
		Time    time.Time
	}{mv.Version, time.Now().UTC().Truncate(time.Second)})
	if err != nil {
		return err
	}
	for name, data := range map[string][]byte{
		zipPath:                                zbuf.Bytes(),
		filepath.Join(dir, mv.Version+".mod"):  m.gomod,
		filepath.Join(dir, mv.Version+".info"): info,
		filepath.Join(dir, "list"):             []byte(mv.Version + "\n"),
	} {
		if err := os.WriteFile(name, data, 0o644); err != nil {
			return err
		}
	}
	zipHash, err := dirhash.HashZip(zipPath, dirhash.Hash1)
	if err != nil {
		return err
	}
	modHash, err := dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(m.gomod)), nil
	})
	if err != nil {
		return err
	}
	p.sums[m.path] = []string{
		fmt.Sprintf("%s %s %s", mv.Path, mv.Version, zipHash),
		fmt.Sprintf("%s %s/go.mod %s", mv.Path, mv.Version, modHash),
	}
	return nil
}

func writeZipFile(zw *zip.Writer, name string, data []byte) error {
	w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate})
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	return err
}

// addSumLines returns the go.sum content sum with lines added, each once.
func addSumLines(sum []byte, lines []string) []byte {
	have := map[string]bool{}
	for l := range strings.SplitSeq(string(sum), "\n") {
		have[l] = true
	}
	out := bytes.TrimRight(sum, "\n")
	if len(out) > 0 {
		out = append(out, '\n')
	}
	for _, l := range lines {
		if !have[l] {
			out = append(out, l+"\n"...)
			have[l] = true
		}
	}
	return out
}
