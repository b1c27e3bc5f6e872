package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGenerateCheck: -check writes nothing, exits 1 on missing or stale
// files with a summary and the exact command to fix, and 0 once fixed.
func TestGenerateCheck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in := filepath.Join(dir, "outbox.yaml")
	out := filepath.Join(dir, "events_gen.go")
	write(t, in, []byte(lockBase))
	var stdout, stderr bytes.Buffer
	check := func(wantCode int) string {
		t.Helper()
		stdout.Reset()
		stderr.Reset()
		if code := run([]string{"-check", "-in", in, "-out", out, "-pkg", "events"}, &stdout, &stderr); code != wantCode {
			t.Fatalf("-check exited %d, want %d\nstdout: %s\nstderr: %s", code, wantCode, &stdout, &stderr)
		}
		return stderr.String()
	}

	msg := check(1)
	if _, err := os.Stat(out); err == nil {
		t.Fatal("-check wrote the Go file")
	}
	fix := "go run github.com/outboxkit/outboxkit/cmd/outboxgen -in " + in + " -out " + out + " -pkg events"
	for _, want := range []string{"4 of 4 generated file(s) stale", out + ": missing (would be created", "to fix, run in ", "\n  " + fix + "\n"} {
		if !strings.Contains(msg, want) {
			t.Fatalf("-check output lacks %q:\n%s", want, msg)
		}
	}

	// The printed command (run in-process here) fixes it.
	args := strings.Fields(strings.TrimPrefix(fix, "go run github.com/outboxkit/outboxkit/cmd/outboxgen "))
	if code := run(args, &stdout, &stderr); code != 0 {
		t.Fatalf("fix command exited %d: %s", code, &stderr)
	}
	check(0)
	if !strings.Contains(stdout.String(), "4 generated file(s) up to date") {
		t.Fatalf("stdout %q", &stdout)
	}

	// A schema change makes the files stale again: the summary names the
	// first differing line of each.
	write(t, in, []byte(strings.Replace(lockBase, "note: {type: string, optional: true}", "note: {type: string, optional: true, max_length: 77}", 1)))
	msg = check(1)
	for _, want := range []string{"3 of 4 generated file(s) stale", out + ": differs from line 18 (-115 +124 lines)", "+ \t\"unicode/utf8\"", "care.invoice.issued.v1.schema.json: differs from line 33 (-1 +2 lines)", `+       "type": "string",`} {
		if !strings.Contains(msg, want) {
			t.Fatalf("-check output lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "care.invoice.paid.v1.schema.json") {
		t.Fatalf("-check reports an unchanged file:\n%s", msg)
	}
}

// TestGoRunAndGoTool runs the generator the two ways a user's go:generate
// line does, in -check mode against the committed example: `go run <pkg>`
// and `go tool outboxgen` (this module's go.mod has the tool directive a
// user's would).
func TestGoRunAndGoTool(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs the go tool")
	}
	for name, argv := range map[string][]string{
		"go run":  {"run", "github.com/outboxkit/outboxkit/cmd/outboxgen"},
		"go tool": {"tool", "outboxgen"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for _, gowork := range []string{"", "off"} {
				cmd := exec.Command("go", append(argv, "-check", "-in", "outbox.yaml", "-out", "events_gen.go", "-pkg", "invoicing")...)
				cmd.Dir = "examples/invoicing"
				cmd.Env = append(os.Environ(), "GOWORK="+gowork)
				out, err := cmd.CombinedOutput()
				if err != nil || !strings.Contains(string(out), "up to date") {
					t.Fatalf("GOWORK=%q go %s: %v\n%s", gowork, strings.Join(cmd.Args[1:], " "), err, out)
				}
			}
		})
	}
	// The example's go:generate lines use the tool directive.
	src, err := os.ReadFile("examples/invoicing/doc.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(src, []byte("\n//go:generate go tool outboxgen -in outbox.yaml -out events_gen.go -pkg invoicing\n")) {
		t.Fatal("examples/invoicing/doc.go lacks the go tool go:generate line")
	}
}
