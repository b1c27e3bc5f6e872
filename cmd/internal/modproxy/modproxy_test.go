package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/modfile"
)

func TestDocSteps(t *testing.T) {
	src := "# Title\n\n<!-- install-check: run -->\n```sh\ngo mod init example.com/x\n```\n\n" +
		"```sh\noutbox relay   # not marked: not run\n```\n\n" +
		"<!-- install-check: file cmd/x/main.go -->\n```go\npackage main\n\nfunc main() {}\n```\n"
	steps, err := docSteps("a.md", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 2 || !steps[0].run || steps[0].body != "go mod init example.com/x\n" ||
		steps[1].run || steps[1].file != "cmd/x/main.go" || steps[1].body != "package main\n\nfunc main() {}\n" {
		t.Fatalf("steps %+v", steps)
	}
	s, err := script(steps)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s, "set -euo pipefail") || !strings.Contains(s, "cat > 'cmd/x/main.go' <<'"+heredocEnd+"'\npackage main\n") || strings.Contains(s, "outbox relay") {
		t.Fatalf("script:\n%s", s)
	}

	for name, bad := range map[string]string{
		"run on go":        "<!-- install-check: run -->\n```go\npackage x\n```\n",
		"no fence":         "<!-- install-check: run -->\n\nsome prose\n",
		"marker at end":    "text\n<!-- install-check: run -->\n",
		"escaping path":    "<!-- install-check: file ../x.go -->\n```go\npackage x\n```\n",
		"quote in path":    "<!-- install-check: file a'b.go -->\n```go\npackage x\n```\n",
		"malformed marker": "<!-- install-check: runn -->\n```sh\nls\n```\n",
		"unterminated":     "<!-- install-check: run -->\n```sh\nls\n",
	} {
		if _, err := docSteps("b.md", []byte(bad)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := script([]docStep{{where: "c.md:1", body: heredocEnd + "\n"}}); err == nil {
		t.Error("a block containing the here-document end: no error")
	}
}

func TestCheckDeps(t *testing.T) {
	mod := func(rel, src string) *workModule {
		f, err := modfile.Parse(rel+"/go.mod", []byte(src), nil)
		if err != nil {
			t.Fatal(err)
		}
		return &workModule{rel: rel, path: f.Module.Mod.Path, file: f}
	}
	a := mod("a", "module example.com/r/a\n\nrequire (\n\tgithub.com/x/dep v1.2.0\n)\n")
	b := mod("b", "module example.com/r/b\n\nrequire (\n\texample.com/r/a v0.2.0\n\tgithub.com/x/dep v1.10.0\n)\n")
	c := mod("c", "module example.com/r/c\n\nrequire example.com/r/a v0.1.0\n\nreplace example.com/r/a => ../a\n")
	if err := checkDeps([]*workModule{a, mod("d", "module example.com/r/d\n\nrequire github.com/x/dep v1.2.0\n")}); err != nil {
		t.Fatalf("aligned modules: %v", err)
	}
	err := checkDeps([]*workModule{a, b, c})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"github.com/x/dep: 2 versions: v1.2.0 in a; v1.10.0 in b",
		"the workspace modules: 2 versions",
		"c/go.mod: replace example.com/r/a => ../a",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestDependencyOrderAndCycle(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, src string) {
		if err := os.MkdirAll(filepath.Join(dir, rel), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, rel, "go.mod"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("", "go 1.26.0\n")
	if err := os.Rename(filepath.Join(dir, "go.mod"), filepath.Join(dir, "go.work")); err != nil {
		t.Fatal(err)
	}
	write("core", "module example.com/r/core\n")
	write("drv", "module example.com/r/drv\n\nrequire example.com/r/core v0.2.0\n")
	write("cli", "module example.com/r/cli\n\nrequire (\n\texample.com/r/drv v0.2.0\n\texample.com/r/core v0.2.0\n)\n")
	if err := os.WriteFile(filepath.Join(dir, "go.work"), []byte("go 1.26.0\n\nuse (\n\t./cli\n\t./core\n\t./drv\n)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mods, err := loadWorkspace(dir)
	if err != nil {
		t.Fatal(err)
	}
	order, err := dependencyOrder(mods)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range order {
		got = append(got, m.rel)
	}
	if strings.Join(got, " ") != "core drv cli" {
		t.Fatalf("order %v, want core drv cli", got)
	}
	if err := checkSiblingVersions(mods, "v0.3.0"); err == nil || !strings.Contains(err.Error(), "drv/go.mod requires example.com/r/core v0.2.0, not the workspace version v0.3.0") {
		t.Fatalf("sibling versions: %v", err)
	}
	write("core", "module example.com/r/core\n\nrequire example.com/r/cli v0.2.0\n")
	if mods, err = loadWorkspace(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := dependencyOrder(mods); err == nil || !strings.Contains(err.Error(), "module cycle") {
		t.Fatalf("cycle: %v", err)
	}
}

// TestBuildProxy: the proxy serves each module at the version, and a
// dependent's zip carries the go.sum lines of the sibling zip it needs,
// computed as the go command does (it verifies them on download).
func TestBuildProxy(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"go.work":      "go 1.26.0\n\nuse (\n\t./core\n\t./drv\n)\n",
		"core/go.mod":  "module example.com/r/core\n\ngo 1.26.0\n",
		"core/core.go": "package core\n",
		"drv/go.mod":   "module example.com/r/drv\n\ngo 1.26.0\n\nrequire example.com/r/core v0.2.0\n",
		"drv/go.sum":   "",
		"drv/drv.go":   "package drv\n\nimport _ \"example.com/r/core\"\n",
	}
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "proxy")
	if err := buildCmd([]string{"-root", dir, "-version", "v0.2.0", "-out", out}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"core/@v/list", "core/@v/v0.2.0.info", "core/@v/v0.2.0.mod", "core/@v/v0.2.0.zip", "drv/@v/v0.2.0.zip"} {
		if _, err := os.Stat(filepath.Join(out, "example.com/r", f)); err != nil {
			t.Error(err)
		}
	}
	zr, err := zipOpen(filepath.Join(out, "example.com/r/drv/@v/v0.2.0.zip"))
	if err != nil {
		t.Fatal(err)
	}
	sum := zr["example.com/r/drv@v0.2.0/go.sum"]
	if !strings.Contains(sum, "example.com/r/core v0.2.0 h1:") || !strings.Contains(sum, "example.com/r/core v0.2.0/go.mod h1:") {
		t.Fatalf("drv's go.sum in the zip:\n%s", sum)
	}
	if err := buildCmd([]string{"-root", dir, "-version", "v0.3.0", "-out", out}); err == nil {
		t.Fatal("a version other than the required one: no error")
	}
}
