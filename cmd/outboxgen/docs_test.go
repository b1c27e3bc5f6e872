package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// mdBlock is one fenced code block of a Markdown file.
type mdBlock struct {
	line int    // line of the opening fence
	lang string // info string
	file string // PATH of a preceding <!-- install-check: file PATH --> marker, if any
	body string
}

var fileMarkerRE = regexp.MustCompile(`^<!-- install-check: file (\S+) -->$`)

// markdownBlocks returns the fenced code blocks of src in order.
func markdownBlocks(t *testing.T, src []byte) []mdBlock {
	t.Helper()
	var (
		out  []mdBlock
		cur  *mdBlock
		body strings.Builder
		prev string
		n    int
	)
	sc := bufio.NewScanner(bytes.NewReader(src))
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if cur == nil {
			if info, ok := strings.CutPrefix(trimmed, "```"); ok {
				cur = &mdBlock{line: n, lang: strings.TrimSpace(info)}
				if m := fileMarkerRE.FindStringSubmatch(prev); m != nil {
					cur.file = m[1]
				}
				body.Reset()
			} else if trimmed != "" {
				prev = trimmed
			}
			continue
		}
		if trimmed == "```" {
			cur.body = body.String()
			out = append(out, *cur)
			cur, prev = nil, ""
			continue
		}
		body.WriteString(line + "\n")
	}
	if cur != nil {
		t.Fatalf("line %d: unterminated code fence", cur.line)
	}
	return out
}

// TestCodegenWalkthrough follows docs/codegen.md as a new user would, in a
// fresh module: every block marked <!-- install-check: file PATH --> is written to PATH
// and every sh block is run, in the order of the page. The module points
// at this checkout with replace directives of its own (and a local proxy
// listing v0.0.0), so that `go get -tool` resolves the generator and the
// framework without depending on this module's go.mod.
func TestCodegenWalkthrough(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs the go tool")
	}
	src, err := os.ReadFile("../../docs/codegen.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := markdownBlocks(t, src)
	gen, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	framework, err := filepath.Abs("../../framework")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	mod := filepath.Join(tmp, "shop")
	write(t, filepath.Join(mod, "go.mod"), []byte("module example.com/shop\n\ngo 1.26.0\n\nreplace (\n"+
		"\tgithub.com/outboxkit/outboxkit/cmd/outboxgen => "+gen+"\n"+
		"\tgithub.com/outboxkit/outboxkit/framework => "+framework+"\n)\n"))
	proxy := filepath.Join(tmp, "proxy")
	for _, m := range []string{"cmd/outboxgen", "framework"} {
		write(t, filepath.Join(proxy, "github.com/outboxkit/outboxkit", m, "@v", "list"), []byte("v0.0.0\n"))
	}
	upstream, err := exec.Command("go", "env", "GOPROXY").Output()
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "GOWORK=off", "GOFLAGS=", "GOPACKAGE=",
		"GOPROXY=file://"+filepath.ToSlash(proxy)+","+strings.TrimSpace(string(upstream)))

	files, runs := 0, 0
	for _, b := range blocks {
		switch {
		case b.file != "":
			write(t, filepath.Join(mod, filepath.FromSlash(b.file)), []byte(b.body))
			files++
		case b.lang == "sh":
			cmd := exec.Command("bash", "-euo", "pipefail", "-c", b.body)
			cmd.Dir = mod
			cmd.Env = env
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("docs/codegen.md:%d: the sh block fails as written (%v):\n%s\n%s", b.line, err, b.body, out)
			}
			runs++
		}
	}
	if files < 2 || runs < 2 {
		t.Fatalf("docs/codegen.md has %d file blocks and %d sh blocks: the walkthrough lost its markers", files, runs)
	}
	for _, f := range []string{"events/events_gen.go", "events/billing.invoice.issued.v1.schema.json", "events/asyncapi.json", "events/outbox.lock.json"} {
		if _, err := os.Stat(filepath.Join(mod, f)); err != nil {
			t.Errorf("after the walkthrough: %v", err)
		}
	}
	gomod, err := os.ReadFile(filepath.Join(mod, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\ntool github.com/outboxkit/outboxkit/cmd/outboxgen\n", "github.com/outboxkit/outboxkit/framework v", "github.com/ThreeDotsLabs/watermill v"} {
		if !bytes.Contains(gomod, []byte(want)) {
			t.Errorf("go.mod after the walkthrough lacks %q:\n%s", want, gomod)
		}
	}
	vet := exec.Command("go", "vet", "./...")
	vet.Dir, vet.Env = mod, env
	if out, err := vet.CombinedOutput(); err != nil {
		t.Fatalf("go vet: %v\n%s", err, out)
	}
}
