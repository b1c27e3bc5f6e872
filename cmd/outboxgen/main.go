// Command outboxgen generates typed outbox events from a schema file
// (outbox.yaml): Go structs with Validate, insert helpers over
// outbox.Outbox.Insert, a Watermill decoder that dispatches by event type and
// version, one JSON Schema per event version and an AsyncAPI 3.0 document.
//
// Usage (from a //go:generate line), with the tool recorded in go.mod
// (go get -tool github.com/outboxkit/outboxkit/cmd/outboxgen):
//
//	//go:generate go tool outboxgen -in outbox.yaml -out events_gen.go -pkg events
//
// or without the tool directive:
//
//	//go:generate go run github.com/outboxkit/outboxkit/cmd/outboxgen -in outbox.yaml -out events_gen.go -pkg events
//
// With -check, generate writes nothing: when a generated file is missing or
// differs from what the schema gives, it exits with status 1 after printing
// a summary of the differences and the command that regenerates them (for CI).
//
// Subcommands:
//
//	outboxgen [generate] -in outbox.yaml -out events_gen.go [-pkg name] [-jsonschema pattern] [-asyncapi file] [-check]
//	outboxgen check      -in outbox.yaml                        validate only
//	outboxgen schema     [-o outbox.schema.json]                write the schema of outbox.yaml
//	outboxgen lock       -in outbox.yaml [-lock outbox.lock.json]
//	outboxgen breaking   -in outbox.yaml [-lock outbox.lock.json]
//
// See README.md for the schema reference.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// errBreaking makes `breaking` exit with status 1 after printing the list.
var errBreaking = errors.New("breaking changes")

// errStale makes `generate -check` exit with status 1 after printing the
// stale files.
var errStale = errors.New("stale generated files")

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "generate"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "generate":
		err = cmdGenerate(args, stdout, stderr)
	case "check":
		err = cmdCheck(args, stdout, stderr)
	case "schema":
		err = cmdSchema(args, stdout, stderr)
	case "lock":
		err = cmdLock(args, stdout, stderr)
	case "breaking":
		err = cmdBreaking(args, stdout, stderr)
	case "help":
		fmt.Fprintln(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "outboxgen: unknown command %q\n%s\n", cmd, usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errBreaking), errors.Is(err, errStale):
		return 1
	}
	fmt.Fprintln(stderr, err)
	return 1
}

const usage = `usage:
  outboxgen [generate] -in outbox.yaml -out events_gen.go [-pkg name] [-jsonschema '{type}.v{version}.schema.json'] [-asyncapi asyncapi.json] [-check]
  outboxgen check      -in outbox.yaml   (validates the schema only; generate -check compares the generated files)
  outboxgen schema     [-o outbox.schema.json]
  outboxgen lock       -in outbox.yaml [-lock outbox.lock.json]
  outboxgen breaking   -in outbox.yaml [-lock outbox.lock.json]`

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("outboxgen "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func load(path string) (*Spec, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("outboxgen: %w", err)
	}
	return Parse(path, src)
}

func cmdGenerate(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("generate", stderr)
	in := fs.String("in", "outbox.yaml", "schema file")
	out := fs.String("out", "events_gen.go", "generated Go file; JSON Schema and AsyncAPI files are written in its directory")
	pkg := fs.String("pkg", "", "Go package name (default: $GOPACKAGE set by go generate, else the output directory's name)")
	js := fs.String("jsonschema", "{type}.v{version}.schema.json", "file name pattern of the per-event JSON Schemas ({type}, {version}, {name}); empty disables")
	aa := fs.String("asyncapi", "asyncapi.json", "file name of the AsyncAPI 3.0 document; empty disables")
	check := fs.Bool("check", false, "write nothing; exit 1 with a summary when a generated file is missing or stale")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("outboxgen: unexpected arguments %q", fs.Args())
	}
	if *pkg == "" {
		*pkg = os.Getenv("GOPACKAGE")
	}
	if *pkg == "" {
		abs, err := filepath.Abs(filepath.Dir(*out))
		if err != nil {
			return err
		}
		*pkg = strings.NewReplacer("-", "", ".", "").Replace(filepath.Base(abs))
		if err := checkPackageName(*pkg); err != nil {
			return fmt.Errorf("outboxgen: the package name derived from the output directory: %w; set -pkg", err)
		}
	}
	spec, err := load(*in)
	if err != nil {
		return err
	}
	files, err := Render(spec, *pkg, filepath.Base(*out), *js, *aa)
	if err != nil {
		return err
	}
	dir := filepath.Dir(*out)
	stale, err := staleSchemas(dir, *js, files)
	if err != nil {
		return err
	}
	if *check {
		return checkFresh(stdout, stderr, dir, files, stale, fixCommand(*in, *out, *pkg, *js, *aa))
	}
	for _, f := range files {
		path := filepath.Join(dir, filepath.FromSlash(f.Name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return fmt.Errorf("outboxgen: %w", err)
		}
		if err := writeIfChanged(path, f.Data); err != nil {
			return err
		}
	}
	for _, path := range stale {
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("outboxgen: %w", err)
		}
		fmt.Fprintf(stdout, "outboxgen: removed %s (no event version produces it any more)\n", path)
	}
	return nil
}

// staleSchemas returns the files of dir matching the -jsonschema pattern
// that a previous run generated (a JSON Schema with x-outbox-type) but
// that no event version of this run produces: left alone, they would keep
// describing a removed event.
func staleSchemas(dir, pattern string, files []File) ([]string, error) {
	if pattern == "" {
		return nil, nil
	}
	glob := strings.NewReplacer("*", `\*`, "?", `\?`, "[", `\[`, `\`, `\\`).Replace(pattern)
	glob = strings.NewReplacer("{type}", "*", "{version}", "*", "{name}", "*").Replace(glob)
	matches, err := filepath.Glob(filepath.Join(dir, filepath.FromSlash(glob)))
	if err != nil {
		return nil, fmt.Errorf("outboxgen: -jsonschema %q: %w", pattern, err)
	}
	produced := map[string]bool{}
	for _, f := range files {
		produced[filepath.Clean(filepath.Join(dir, filepath.FromSlash(f.Name)))] = true
	}
	var stale []string
	for _, path := range matches {
		if produced[filepath.Clean(path)] {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			continue // a directory or unreadable: not ours
		}
		var doc struct {
			Type *string `json:"x-outbox-type"`
		}
		if json.Unmarshal(b, &doc) == nil && doc.Type != nil {
			stale = append(stale, path)
		}
	}
	return stale, nil
}

// File is one generated output.
type File struct {
	Name string
	Data []byte
}

// Render returns every output of spec: the Go file, then the JSON Schemas,
// then the AsyncAPI document, each named relative to the output directory.
func Render(spec *Spec, pkg, goName, jsonSchemaPattern, asyncAPIName string) ([]File, error) {
	src, err := Generate(spec, pkg)
	if err != nil {
		return nil, err
	}
	if err := checkGoFileName(goName); err != nil {
		return nil, fmt.Errorf("outboxgen: %w", err)
	}
	files := []File{{goName, src}}
	if jsonSchemaPattern != "" {
		seen := map[string]bool{}
		for _, e := range spec.Events {
			name := schemaFileName(jsonSchemaPattern, e)
			if err := checkOutputName("-jsonschema", name); err != nil {
				return nil, fmt.Errorf("outboxgen: %w", err)
			}
			if seen[name] {
				return nil, fmt.Errorf("outboxgen: -jsonschema %q gives two events the file name %s; use {type} and {version}", jsonSchemaPattern, name)
			}
			seen[name] = true
			b, err := EventJSONSchema(e)
			if err != nil {
				return nil, err
			}
			files = append(files, File{name, b})
		}
	}
	if asyncAPIName != "" {
		b, err := AsyncAPI(spec, pkg)
		if err != nil {
			return nil, err
		}
		if err := checkOutputName("-asyncapi", asyncAPIName); err != nil {
			return nil, fmt.Errorf("outboxgen: %w", err)
		}
		files = append(files, File{asyncAPIName, b})
	}
	// Two outputs with one name (or names differing only in case, one file
	// on macOS and Windows) would overwrite each other.
	names := map[string]string{}
	for _, f := range files {
		k := strings.ToLower(path.Clean(f.Name))
		if prev, ok := names[k]; ok {
			return nil, fmt.Errorf("outboxgen: two generated files would be written to one path: %s and %s (check -out, -jsonschema and -asyncapi)", prev, f.Name)
		}
		names[k] = f.Name
	}
	return files, nil
}

// writeIfChanged keeps mtimes (and build caches) stable on no-op runs.
func writeIfChanged(path string, data []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("outboxgen: %w", err)
	}
	return nil
}

func cmdCheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check", stderr)
	in := fs.String("in", "outbox.yaml", "schema file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	spec, err := load(*in)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %d event version(s), %d type(s): ok\n", *in, len(spec.Events), len(spec.Types))
	return nil
}

func cmdSchema(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("schema", stderr)
	o := fs.String("o", "", "write the JSON Schema of outbox.yaml to this file (default: standard output)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *o == "" {
		_, err := stdout.Write(metaSchemaJSON)
		return err
	}
	return writeIfChanged(*o, metaSchemaJSON)
}

func cmdLock(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("lock", stderr)
	in := fs.String("in", "outbox.yaml", "schema file")
	lockPath := fs.String("lock", "outbox.lock.json", "lock file to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	spec, err := load(*in)
	if err != nil {
		return err
	}
	b, err := MarshalLock(BuildLock(spec))
	if err != nil {
		return err
	}
	if err := writeIfChanged(*lockPath, b); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (%d event versions)\n", *lockPath, len(spec.Events))
	return nil
}

func cmdBreaking(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("breaking", stderr)
	in := fs.String("in", "outbox.yaml", "schema file")
	lockPath := fs.String("lock", "outbox.lock.json", "committed lock file to compare against")
	if err := fs.Parse(args); err != nil {
		return err
	}
	spec, err := load(*in)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(*lockPath)
	if err != nil {
		return fmt.Errorf("outboxgen: %w (create it with: outboxgen lock -in %s -lock %s)", err, *in, *lockPath)
	}
	old, err := UnmarshalLock(b)
	if err != nil {
		return fmt.Errorf("outboxgen: %s: %w", *lockPath, err)
	}
	changes := Breaking(old, BuildLock(spec))
	if len(changes) == 0 {
		fmt.Fprintf(stdout, "%s: no breaking changes against %s\n", *in, *lockPath)
		return nil
	}
	fmt.Fprintf(stderr, "outboxgen: %d breaking change(s) in %s against %s:\n", len(changes), *in, *lockPath)
	for _, c := range changes {
		fmt.Fprintf(stderr, "  - %s\n", c)
	}
	return errBreaking
}

// fixCommand is the exact command that regenerates what -check compared,
// with every flag resolved (a -pkg taken from $GOPACKAGE is spelled out).
func fixCommand(in, out, pkg, js, aa string) string {
	args := []string{"go", "run", "github.com/outboxkit/outboxkit/cmd/outboxgen", "-in", in, "-out", out, "-pkg", pkg}
	if js != "{type}.v{version}.schema.json" {
		args = append(args, "-jsonschema", js)
	}
	if aa != "asyncapi.json" {
		args = append(args, "-asyncapi", aa)
	}
	for i, a := range args {
		args[i] = shellQuote(a)
	}
	return strings.Join(args, " ")
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./=:@+-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// checkFresh compares files with dir's content and reports each missing or
// different one with a short summary of the difference.
func checkFresh(stdout, stderr io.Writer, dir string, files []File, leftover []string, fix string) error {
	var stale []string
	for _, f := range files {
		path := filepath.Join(dir, filepath.FromSlash(f.Name))
		old, err := os.ReadFile(path)
		switch {
		case errors.Is(err, os.ErrNotExist):
			stale = append(stale, fmt.Sprintf("  %s: missing (would be created, %d lines)", path, bytes.Count(f.Data, []byte("\n"))))
		case err != nil:
			return fmt.Errorf("outboxgen: %w", err)
		case !bytes.Equal(old, f.Data):
			stale = append(stale, "  "+path+": "+diffSummary(old, f.Data))
		}
	}
	for _, path := range leftover {
		stale = append(stale, "  "+path+": left from an event version that no longer exists (would be removed)")
	}
	if len(stale) == 0 {
		fmt.Fprintf(stdout, "outboxgen: %d generated file(s) up to date\n", len(files))
		return nil
	}
	wd, _ := os.Getwd()
	fmt.Fprintf(stderr, "outboxgen: %d of %d generated file(s) stale:\n%s\nto fix, run in %s:\n  %s\n(or go generate ./... in the module)\n",
		len(stale), len(files)+len(leftover), strings.Join(stale, "\n"), wd, fix)
	return errStale
}

// diffSummary says which line range differs between have and want (after
// their common head and tail) and shows the first differing line of each.
func diffSummary(have, want []byte) string {
	h := strings.SplitAfter(string(have), "\n")
	w := strings.SplitAfter(string(want), "\n")
	pre := 0
	for pre < len(h) && pre < len(w) && h[pre] == w[pre] {
		pre++
	}
	suf := 0
	for suf < len(h)-pre && suf < len(w)-pre && h[len(h)-1-suf] == w[len(w)-1-suf] {
		suf++
	}
	hd, wd := h[pre:len(h)-suf], w[pre:len(w)-suf]
	var b strings.Builder
	fmt.Fprintf(&b, "differs from line %d (-%d +%d lines)", pre+1, len(hd), len(wd))
	show := func(sign string, lines []string) {
		if len(lines) > 0 {
			l := strings.TrimRight(lines[0], "\n")
			if len(l) > 100 {
				l = l[:100] + "..."
			}
			fmt.Fprintf(&b, "\n      %s %s", sign, l)
		}
	}
	show("-", hd)
	show("+", wd)
	return b.String()
}
