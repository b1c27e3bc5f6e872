package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// scratchModule returns a throwaway module in t.TempDir() that requires
// the workspace's framework through a replace, as a user's module would,
// with this module's go.sum.
func scratchModule(t *testing.T, name string) string {
	t.Helper()
	framework, err := filepath.Abs("../../framework")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	gomod := "module example.com/" + name + "\n\ngo 1.26.0\n\n" +
		"require (\n\tgithub.com/outboxkit/outboxkit/framework v0.0.0\n\tgithub.com/ThreeDotsLabs/watermill v1.5.1\n)\n\n" +
		"replace github.com/outboxkit/outboxkit/framework => " + framework + "\n"
	write(t, filepath.Join(tmp, "go.mod"), []byte(gomod))
	sum, err := os.ReadFile("go.sum")
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(tmp, "go.sum"), sum)
	return tmp
}

// goIn runs the go command in dir, outside the workspace, and returns its
// combined output; it fails the test on error.
func goIn(t *testing.T, dir string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// renderInto parses schema, renders it as package pkg and writes the files
// under dir/pkg; it returns the spec and files.
func renderInto(t *testing.T, dir, pkg, schema string) (*Spec, []File) {
	t.Helper()
	spec, err := Parse(pkg+".yaml", []byte(schema))
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, schema)
	}
	files, err := Render(spec, pkg, "events_gen.go", "{type}.v{version}.schema.json", "asyncapi.json")
	if err != nil {
		t.Fatalf("Render: %v\n%s", err, schema)
	}
	for _, f := range files {
		write(t, filepath.Join(dir, pkg, f.Name), f.Data)
	}
	return spec, files
}
