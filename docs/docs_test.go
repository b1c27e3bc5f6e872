package docs

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/format"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// block is one fenced code block of a Markdown file.
type block struct {
	file  string // path relative to the repository root, e.g. "docs/faq.md"
	line  int    // line of the opening fence
	lang  string // the fence's info string, e.g. "go"
	body  string
	after string // the last non-empty line before the fence (a marker comment, if any)
}

func (b block) where() string { return fmt.Sprintf("%s:%d", b.file, b.line) }

// fragmentRe marks a Go block that is not a complete file; the named test file
// must contain every non-empty line of it.
var fragmentRe = regexp.MustCompile(`^<!-- fragment: checked by (\S+) -->$`)

// diagramMarker allows a ```text block that is a drawing, not code.
const diagramMarker = "<!-- diagram -->"

// repoRoot is the repository checkout, one level above this module.
const repoRoot = ".."

// markdownFiles returns README.md and docs/*.md, relative to the repository root.
func markdownFiles(t *testing.T) []string {
	t.Helper()
	files := []string{"README.md"}
	docs, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		files = append(files, "docs/"+d)
	}
	return files
}

// extract returns the fenced code blocks of a Markdown file. An unterminated
// fence is an error.
func extract(file string, src []byte) ([]block, error) {
	var (
		blocks []block
		cur    *block
		body   strings.Builder
		prev   string
		n      int
	)
	sc := bufio.NewScanner(bytes.NewReader(src))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if cur == nil {
			if info, ok := strings.CutPrefix(trimmed, "```"); ok {
				cur = &block{file: file, line: n, lang: strings.TrimSpace(info), after: prev}
				body.Reset()
				continue
			}
			if trimmed != "" {
				prev = trimmed
			}
			continue
		}
		if trimmed == "```" {
			cur.body = body.String()
			blocks = append(blocks, *cur)
			cur, prev = nil, ""
			continue
		}
		body.WriteString(line)
		body.WriteByte('\n')
	}
	if cur != nil {
		return nil, fmt.Errorf("%s: unterminated code fence", cur.where())
	}
	return blocks, sc.Err()
}

// TestCodeBlocks checks every fenced code block of README.md and docs/*.md:
// Go blocks are complete files vetted together (or fragments whose lines a
// named test file contains), YAML and JSON blocks parse, and shell lines name
// real CLI commands and flags, Makefile targets and paths. Any other language
// fails, so nothing in the documentation escapes checking.
func TestCodeBlocks(t *testing.T) {
	t.Parallel()
	var goBlocks []block
	var shellLines []shellLine
	var outboxYAML []block
	counts := map[string]int{}
	for _, file := range markdownFiles(t) {
		src, err := os.ReadFile(filepath.Join(repoRoot, file))
		if err != nil {
			t.Fatal(err)
		}
		blocks, err := extract(file, src)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range blocks {
			counts[b.lang]++
			switch b.lang {
			case "go":
				if m := fragmentRe.FindStringSubmatch(b.after); m != nil {
					checkFragment(t, b, m[1])
					continue
				}
				goBlocks = append(goBlocks, b)
			case "yaml":
				if err := checkYAML(b.body); err != nil {
					t.Errorf("%s: invalid YAML: %v", b.where(), err)
				}
				if isOutboxSchema(b.body) {
					outboxYAML = append(outboxYAML, b)
				}
			case "json":
				if !json.Valid([]byte(b.body)) {
					var v any
					t.Errorf("%s: invalid JSON: %v", b.where(), json.Unmarshal([]byte(b.body), &v))
				}
			case "sh", "console":
				lines, err := shellCommands(b)
				if err != nil {
					t.Error(err)
				}
				shellLines = append(shellLines, lines...)
			case "text":
				if b.after != diagramMarker {
					t.Errorf("%s: a ```text block must be a drawing preceded by %s", b.where(), diagramMarker)
				}
				if m := regexp.MustCompile(`(?m)^\s*(\$ |outbox |go |make )`).FindString(b.body); m != "" {
					t.Errorf("%s: a diagram contains a command line (%q): use a checked ```sh block", b.where(), m)
				}
			default:
				t.Errorf("%s: code block language %q is not checked: use go, yaml, json, sh or console (or text with %s)",
					b.where(), b.lang, diagramMarker)
			}
		}
	}
	t.Logf("checked blocks by language: %v", counts)
	if len(goBlocks) == 0 || len(shellLines) == 0 {
		t.Fatalf("found %d Go blocks and %d shell lines: extraction is broken", len(goBlocks), len(shellLines))
	}

	t.Run("go", func(t *testing.T) {
		t.Parallel()
		vetGoBlocks(t, goBlocks)
	})
	t.Run("tools", func(t *testing.T) {
		t.Parallel()
		outboxBin, outboxgenBin := buildTools(t)
		checkShell(t, outboxBin, outboxgenBin, shellLines)
		checkOutboxSchemas(t, outboxgenBin, outboxYAML)
	})
}

// checkFragment verifies that the test file named by a fragment marker exists
// and contains every non-empty line of the fragment.
func checkFragment(t *testing.T, b block, path string) {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot, filepath.FromSlash(path)))
	if err != nil {
		t.Errorf("%s: fragment marker names %s: %v", b.where(), path, err)
		return
	}
	if !strings.HasSuffix(path, "_test.go") {
		t.Errorf("%s: fragment marker must name a _test.go file, not %s", b.where(), path)
	}
	for i, line := range strings.Split(b.body, "\n") {
		if l := strings.TrimSpace(line); l != "" && !bytes.Contains(src, []byte(l)) {
			t.Errorf("%s:%d: fragment line not found in %s: %s", b.file, b.line+1+i, path, l)
		}
	}
}

// checkYAML decodes every document of a YAML block.
func checkYAML(body string) error {
	dec := yaml.NewDecoder(strings.NewReader(body))
	for {
		var v any
		if err := dec.Decode(&v); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// isOutboxSchema reports whether a YAML block is an outboxgen schema (a
// top-level "events" list).
func isOutboxSchema(body string) bool {
	var doc map[string]any
	if yaml.Unmarshal([]byte(body), &doc) != nil {
		return false
	}
	_, ok := doc["events"].([]any)
	return ok
}

// vetGoBlocks writes each complete Go block into its own directory of this
// module and vets them all with one `go vet`, mapping diagnostics back to the
// Markdown line.
func vetGoBlocks(t *testing.T, blocks []block) {
	dir, err := os.MkdirTemp(".", "_blocks-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	dirs := map[string]block{}
	var pkgs []string
	for _, b := range blocks {
		if !checkGoFile(t, b) {
			continue
		}
		name := fmt.Sprintf("%s_%d", strings.NewReplacer("/", "_", ".", "_", "-", "_").Replace(b.file), b.line)
		d := filepath.Join(dir, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "main.go"), []byte(b.body), 0o644); err != nil {
			t.Fatal(err)
		}
		dirs[name] = b
		pkgs = append(pkgs, "./"+filepath.ToSlash(d))
	}
	if len(pkgs) == 0 {
		return
	}
	// GOWORK=off: the blocks must build from docs/go.mod alone, as they would
	// in a user's module. The outboxkit modules it requires at the release
	// version are not published yet: a copy of docs/go.mod (-modfile) points
	// them at the working tree, as go.work's replace block does.
	cmd := exec.Command("go", append([]string{"vet", "-modfile=" + siblingModfile(t)}, pkgs...)...)
	cmd.Env = append(os.Environ(), "GOWORK=off")
	out, err := cmd.CombinedOutput()
	if err == nil {
		return
	}
	// Diagnostics name "<dir>/<name>/main.go:L:C": point at the Markdown line.
	diag := regexp.MustCompile(`(?:\S*/)?(` + regexp.QuoteMeta(filepath.Base(dir)) + `/([^/\s]+)/main\.go):(\d+)(?::\d+)?`)
	text := diag.ReplaceAllStringFunc(string(out), func(m string) string {
		sm := diag.FindStringSubmatch(m)
		b, ok := dirs[sm[2]]
		if !ok {
			return m
		}
		l, _ := strconv.Atoi(sm[3])
		return fmt.Sprintf("%s:%d", b.file, b.line+l)
	})
	t.Errorf("go vet of the documentation's Go blocks failed (%v):\n%s", err, text)
}

// siblingModfile returns a copy of docs/go.mod (with docs/go.sum beside it)
// that replaces every module go.work's replace block names with its folder.
func siblingModfile(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "work", "edit", "-json", filepath.Join(repoRoot, "go.work")).Output()
	if err != nil {
		t.Fatalf("go work edit -json: %v", err)
	}
	var work struct {
		Replace []struct {
			Old struct{ Path, Version string }
			New struct{ Path string }
		}
	}
	if err := json.Unmarshal(out, &work); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, f := range []string{"go.mod", "go.sum"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	modfile := filepath.Join(dir, "go.mod")
	args := []string{"mod", "edit"}
	for _, r := range work.Replace {
		abs, err := filepath.Abs(filepath.Join(repoRoot, r.New.Path))
		if err != nil {
			t.Fatal(err)
		}
		args = append(args, "-replace="+r.Old.Path+"@"+r.Old.Version+"="+abs)
	}
	if out, err := exec.Command("go", append(args, modfile)...).CombinedOutput(); err != nil {
		t.Fatalf("go mod edit: %v\n%s", err, out)
	}
	return modfile
}

// depsImports returns the import paths deps.go lists.
func depsImports(t *testing.T) map[string]bool {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "deps.go", nil, parser.ImportsOnly)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, imp := range f.Imports {
		path, _ := strconv.Unquote(imp.Path.Value)
		out[path] = true
	}
	return out
}

// checkGoFile parses a Go block as a complete, gofmt-formatted file: a
// package clause, and func main in package main.
func checkGoFile(t *testing.T, b block) bool {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "block.go", b.body, parser.ParseComments)
	if err != nil {
		t.Errorf("%s: not a complete Go file (mark fragments with <!-- fragment: checked by path/x_test.go -->): %v", b.where(), err)
		return false
	}
	deps := depsImports(t)
	for _, imp := range f.Imports {
		path, _ := strconv.Unquote(imp.Path.Value)
		if strings.Contains(path, ".") && !deps[path] {
			t.Errorf("%s: import %q is missing from deps.go (without it `go mod tidy` drops its requirement)", b.where(), path)
		}
	}
	if f.Name.Name == "main" && f.Scope.Lookup("main") == nil {
		t.Errorf("%s: package main without func main", b.where())
		return false
	}
	if formatted, err := format.Source([]byte(b.body)); err == nil && string(formatted) != b.body {
		t.Errorf("%s: Go block is not gofmt-formatted", b.where())
	}
	return true
}

// shellLine is one command of a sh or console block.
type shellLine struct {
	where string
	dir   string   // working directory relative to the repository root (after `cd`)
	args  []string // the command's words, environment assignments removed
}

// shellCommands returns the commands of a shell block. In a console block
// only lines starting with "$ " are commands (the rest is output); in a sh
// block every line is. Comments, `\` continuations, `&&` chains and leading
// VAR=value assignments are handled; `cd` changes the directory of the
// following commands.
func shellCommands(b block) ([]shellLine, error) {
	var out []shellLine
	dir := "."
	lines := strings.Split(b.body, "\n")
	for i := 0; i < len(lines); i++ {
		lineNo := b.line + 1 + i
		line := lines[i]
		if b.lang == "console" {
			rest, ok := strings.CutPrefix(line, "$ ")
			if !ok {
				continue
			}
			line = rest
		}
		for strings.HasSuffix(line, `\`) && i+1 < len(lines) {
			i++
			line = strings.TrimSuffix(line, `\`) + " " + lines[i]
		}
		words, err := splitWords(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", b.file, lineNo, err)
		}
		for _, cmd := range splitChain(words) {
			for len(cmd) > 0 && regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`).MatchString(cmd[0]) {
				cmd = cmd[1:]
			}
			if len(cmd) == 0 {
				continue
			}
			where := fmt.Sprintf("%s:%d", b.file, lineNo)
			if cmd[0] == "cd" && len(cmd) == 2 {
				dir = filepath.Join(dir, cmd[1])
			}
			out = append(out, shellLine{where: where, dir: dir, args: cmd})
		}
	}
	return out, nil
}

// splitWords splits a shell line into words: single and double quotes group,
// an unquoted # starts a comment.
func splitWords(line string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool // inside a word
		quote rune
	)
	for _, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == '#' && !in:
			return flush(words, &cur, in), nil
		case r == ' ' || r == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated quote in %q", line)
	}
	return flush(words, &cur, in), nil
}

func flush(words []string, cur *strings.Builder, in bool) []string {
	if in {
		words = append(words, cur.String())
	}
	return words
}

// splitChain splits words on && and ; into separate commands.
func splitChain(words []string) [][]string {
	var cmds [][]string
	var cur []string
	for _, w := range words {
		if w == "&&" || w == ";" {
			cmds = append(cmds, cur)
			cur = nil
			continue
		}
		cur = append(cur, w)
	}
	return append(cmds, cur)
}

// allowedCommands are the programs a shell block may run besides outbox,
// outboxgen, go, make and cd, each with the reason it cannot be checked
// further.
var allowedCommands = map[string]string{
	"export": "sets the environment of the following commands (OUTBOX_* variables the CLI reads)",
	"psql":   "PostgreSQL's own client, shown for inspecting the outbox table; not ours to check",
	"curl":   "probes the relay's /metrics, /healthz and /readyz endpoints, which need a running relay",
	"docker": "starts the test services of the README; make install-check runs no docker block",
}

// goCommands are the go subcommands a block may use; their package arguments
// must exist in the repository.
var goCommands = []string{"build", "generate", "get", "install", "mod", "run", "test", "tool", "vet"}

// checkShell checks every shell command: outbox and outboxgen lines against
// the real programs, make targets against the Makefile, go and cd paths
// against the repository, anything else against allowedCommands.
func checkShell(t *testing.T, outboxBin, outboxgenBin string, lines []shellLine) {
	targets := makeTargets(t)
	var cli []shellLine
	for _, l := range lines {
		switch prog := l.args[0]; {
		case prog == "outbox":
			cli = append(cli, l)
		case prog == "make":
			for _, tg := range l.args[1:] {
				if !strings.HasPrefix(tg, "-") && !targets[tg] {
					t.Errorf("%s: `make %s`: no such Makefile target", l.where, tg)
				}
			}
		case prog == "cd":
			if len(l.args) != 2 || !isDir(filepath.Join(repoRoot, l.dir)) {
				t.Errorf("%s: `%s`: no such directory in the repository", l.where, strings.Join(l.args, " "))
			}
		case prog == "go":
			checkGoCommand(t, outboxgenBin, l)
		case prog == "outboxgen":
			checkOutboxgenArgs(t, l.where, outboxgenBin, l.args[1:])
		default:
			if _, ok := allowedCommands[prog]; !ok {
				t.Errorf("%s: command %q is not checked: add it to allowedCommands in docs_test.go with a reason, or drop it", l.where, prog)
			}
		}
	}
	for _, l := range cli {
		cmd := exec.Command(outboxBin, append(slices.Clone(l.args[1:]), "--help")...)
		cmd.Env = append(os.Environ(), "OUTBOX_CONFIG=", "OUTBOX_DB_URL=", "OUTBOX_BROKER_URL=")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s: `%s` is not accepted by the CLI (%v): %s", l.where, strings.Join(l.args, " "), err, lastLine(out))
		}
	}
}

// checkGoCommand checks a `go <sub> ...` line: the subcommand is known and
// every package argument exists (./x relative to the block's directory,
// github.com/outboxkit/outboxkit/x in the repository).
func checkGoCommand(t *testing.T, outboxgenBin string, l shellLine) {
	t.Helper()
	if len(l.args) < 2 || !slices.Contains(goCommands, l.args[1]) {
		t.Errorf("%s: `%s`: go subcommand not checked (want one of %v)", l.where, strings.Join(l.args, " "), goCommands)
		return
	}
	if l.args[1] == "tool" && len(l.args) > 2 && l.args[2] == "outboxgen" {
		checkOutboxgenArgs(t, l.where, outboxgenBin, l.args[3:])
		return
	}
	const modPrefix = "github.com/outboxkit/outboxkit/"
	args := l.args[2:]
	for i, a := range args {
		if strings.HasPrefix(a, "-") {
			continue
		}
		a, _, _ = strings.Cut(a, "@")
		var path string
		switch {
		case strings.HasPrefix(a, "./") || strings.HasPrefix(a, "../") || a == ".":
			path = filepath.Join(l.dir, strings.TrimSuffix(strings.TrimSuffix(a, "..."), "/"))
		case strings.HasPrefix(a, modPrefix):
			path = strings.TrimSuffix(strings.TrimPrefix(a, modPrefix), "/...")
		default:
			continue
		}
		if !isDir(filepath.Join(repoRoot, path)) {
			t.Errorf("%s: `%s`: %s does not exist in the repository", l.where, strings.Join(l.args, " "), a)
			continue
		}
		// `go run .../cmd/outboxgen SUBCOMMAND ...`: check the generator's arguments too.
		if l.args[1] == "run" && strings.HasSuffix(a, "cmd/outboxgen") {
			checkOutboxgenArgs(t, l.where, outboxgenBin, args[i+1:])
			return
		}
		if l.args[1] == "run" {
			return // the rest are the program's own arguments
		}
	}
}

// checkOutboxgenArgs checks an outboxgen command line with the real
// generator: its arguments plus -h must exit 0 (the subcommand and every flag
// exist).
func checkOutboxgenArgs(t *testing.T, where, bin string, args []string) {
	t.Helper()
	if out, err := exec.Command(bin, append(slices.Clone(args), "-h")...).CombinedOutput(); err != nil {
		t.Errorf("%s: `outboxgen %s` is not accepted by the generator (%v): %s", where, strings.Join(args, " "), err, lastLine(out))
	}
}

// checkOutboxSchemas runs the real `outboxgen check` on every outbox.yaml block.
func checkOutboxSchemas(t *testing.T, bin string, blocks []block) {
	t.Helper()
	dir := t.TempDir()
	for i, b := range blocks {
		f := filepath.Join(dir, fmt.Sprintf("outbox%d.yaml", i))
		if err := os.WriteFile(f, []byte(b.body), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bin, "check", "-in", f).CombinedOutput(); err != nil {
			t.Errorf("%s: outboxgen check rejects this outbox.yaml (%v): %s", b.where(), err, out)
		}
	}
}

// buildTools builds cmd/outbox and cmd/outboxgen of the workspace with one
// `go build` and returns their paths.
func buildTools(t *testing.T) (outboxBin, outboxgenBin string) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "./cmd/outbox", "./cmd/outboxgen")
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the CLIs: %v\n%s", err, out)
	}
	return filepath.Join(dir, "outbox"), filepath.Join(dir, "outboxgen")
}

var targetRe = regexp.MustCompile(`(?m)^([a-zA-Z0-9_-]+):`)

// makeTargets returns the targets of the repository's Makefile.
func makeTargets(t *testing.T) map[string]bool {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	targets := map[string]bool{}
	for _, m := range targetRe.FindAllStringSubmatch(string(src), -1) {
		targets[m[1]] = true
	}
	return targets
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

func lastLine(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}

// TestExtract checks the fence parser on the cases the documentation relies on.
func TestExtract(t *testing.T) {
	t.Parallel()
	src := "text\n<!-- fragment: checked by x_test.go -->\n```go\nfoo()\n```\n\n```sh\nmake test # c\n```\n"
	blocks, err := extract("f.md", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 2 || blocks[0].line != 3 || blocks[0].lang != "go" || blocks[0].body != "foo()\n" ||
		fragmentRe.FindStringSubmatch(blocks[0].after) == nil || blocks[1].after != "" || blocks[1].line != 7 {
		t.Fatalf("extract = %+v", blocks)
	}
	if _, err := extract("f.md", []byte("```go\nx\n")); err == nil {
		t.Fatal("unterminated fence accepted")
	}
	lines, err := shellCommands(block{file: "f.md", line: 1, lang: "sh", body: "A=1 outbox status -o json # c\ncd drivers/mysql && go test ./...\n"})
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 3 || strings.Join(lines[0].args, " ") != "outbox status -o json" || lines[2].dir != "drivers/mysql" {
		t.Fatalf("shellCommands = %+v", lines)
	}
	words, err := splitWords(`outbox relay --broker-url 'nats://h?a=1&b=#x' "two words"`)
	if err != nil || len(words) != 5 || words[3] != "nats://h?a=1&b=#x" || words[4] != "two words" {
		t.Fatalf("splitWords = %q, %v", words, err)
	}
}
