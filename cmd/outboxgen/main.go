// Command outboxgen generates typed outbox events from a schema file
// (outbox.yaml): Go structs with Validate, insert helpers over
// outbox.Outbox.Insert, a Watermill decoder that dispatches by event type and
// version, one JSON Schema per event version and an AsyncAPI 3.0 document.
//
// Usage (from a //go:generate line):
//
//	//go:generate go run github.com/outboxkit/outboxkit/cmd/outboxgen -in outbox.yaml -out events_gen.go -pkg events
//
// Subcommands:
//
//	outboxgen [generate] -in outbox.yaml -out events_gen.go [-pkg name] [-jsonschema pattern] [-asyncapi file]
//	outboxgen check      -in outbox.yaml                        validate only
//	outboxgen schema     [-o outbox.schema.json]                write the schema of outbox.yaml
//	outboxgen lock       -in outbox.yaml [-lock outbox.lock.json]
//	outboxgen breaking   -in outbox.yaml [-lock outbox.lock.json]
//
// See README.md for the schema reference.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// errBreaking makes `breaking` exit with status 1 after printing the list.
var errBreaking = errors.New("breaking changes")

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "generate"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "generate":
		err = cmdGenerate(args, stderr)
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
	case errors.Is(err, errBreaking):
		return 1
	}
	fmt.Fprintln(stderr, err)
	return 1
}

const usage = `usage:
  outboxgen [generate] -in outbox.yaml -out events_gen.go [-pkg name] [-jsonschema '{type}.v{version}.schema.json'] [-asyncapi asyncapi.json]
  outboxgen check      -in outbox.yaml
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

func cmdGenerate(args []string, stderr io.Writer) error {
	fs := newFlags("generate", stderr)
	in := fs.String("in", "outbox.yaml", "schema file")
	out := fs.String("out", "events_gen.go", "generated Go file; JSON Schema and AsyncAPI files are written in its directory")
	pkg := fs.String("pkg", "", "Go package name (default: $GOPACKAGE set by go generate, else the output directory's name)")
	js := fs.String("jsonschema", "{type}.v{version}.schema.json", "file name pattern of the per-event JSON Schemas ({type}, {version}, {name}); empty disables")
	aa := fs.String("asyncapi", "asyncapi.json", "file name of the AsyncAPI 3.0 document; empty disables")
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
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("outboxgen: %w", err)
	}
	for _, f := range files {
		if err := writeIfChanged(filepath.Join(dir, f.Name), f.Data); err != nil {
			return err
		}
	}
	return nil
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
	files := []File{{goName, src}}
	if jsonSchemaPattern != "" {
		seen := map[string]bool{}
		for _, e := range spec.Events {
			name := schemaFileName(jsonSchemaPattern, e)
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
		files = append(files, File{asyncAPIName, b})
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
