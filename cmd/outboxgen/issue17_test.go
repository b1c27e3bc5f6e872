package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Tests of the problems reported in issue 17, one per item; each failed
// before its fix. They use only Parse, Render, Breaking, UnmarshalLock and
// run, so that they can be run against an older generator.

// parseErr parses src and returns its diagnostics, failing when it parses.
func parseErr(t *testing.T, src string) string {
	t.Helper()
	_, err := Parse("bad.yaml", []byte(src))
	var se *SchemaError
	if !errors.As(err, &se) {
		t.Fatalf("Parse accepted (or failed without *SchemaError: %v):\n%s", err, src)
	}
	return err.Error()
}

func wantLine(t *testing.T, errText string, prefixes ...string) {
	t.Helper()
	for _, p := range prefixes {
		found := false
		for _, l := range strings.Split(errText, "\n") {
			if strings.HasPrefix(l, p) {
				found = true
			}
		}
		if !found {
			t.Errorf("error lacks a line starting with\n  %s\ngot:\n%s", p, errText)
		}
	}
}

// Item 4: an AsyncAPI schema key asked for twice is refused with both
// positions; topics that sanitize alike keep their own channels.
func TestAsyncAPIKeysAndChannels(t *testing.T) {
	t.Parallel()
	src := "types:\n  OrderPlacedPayload:\n    fields:\n      x: {type: string}\n" +
		"events:\n  - name: OrderPlaced\n    type: shop.order.placed\n    version: 1\n    topic: orders\n    fields:\n      p: {type: OrderPlacedPayload}\n"
	wantLine(t, parseErr(t, src), "bad.yaml:6:11: events[0].name: AsyncAPI schema key OrderPlacedPayload (payload schema of event shop.order.placed v1) collides with schema of type OrderPlacedPayload at bad.yaml:2:3")

	topics := []string{"orders/created", "orders_created", "заказы", "注文"}
	var b strings.Builder
	b.WriteString("events:\n")
	for i, tp := range topics {
		fmt.Fprintf(&b, "  - name: E%d\n    type: shop.e%d\n    version: 1\n    topic: %q\n    fields:\n      x: {type: string}\n", i, i, tp)
	}
	spec, err := Parse("ok.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	files, err := Render(spec, "p", "events_gen.go", "", "asyncapi.json")
	if err != nil {
		t.Fatal(err)
	}
	api := files[len(files)-1].Data
	if err := noDuplicateKeys(json.NewDecoder(bytes.NewReader(api))); err != nil {
		t.Fatalf("asyncapi.json: %v", err)
	}
	var doc struct {
		Channels map[string]struct {
			Address  string
			Messages map[string]any
		}
	}
	if err := json.Unmarshal(api, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Channels) != len(topics) {
		t.Fatalf("%d channels for %d topics: %v", len(doc.Channels), len(topics), doc.Channels)
	}
	for _, ch := range doc.Channels {
		for msg := range ch.Messages {
			var i int
			fmt.Sscanf(msg, "E%d", &i)
			if topics[i] != ch.Address {
				t.Errorf("message %s (topic %q) filed under channel address %q", msg, topics[i], ch.Address)
			}
		}
	}
}

// noDuplicateKeys fails on the first JSON object holding a key twice.
func noDuplicateKeys(dec *json.Decoder) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return err
			}
			if seen[k.(string)] {
				return fmt.Errorf("duplicate key %q", k)
			}
			seen[k.(string)] = true
			if err := noDuplicateKeys(dec); err != nil {
				return err
			}
		}
		_, err = dec.Token()
	case json.Delim('['):
		for dec.More() {
			if err := noDuplicateKeys(dec); err != nil {
				return err
			}
		}
		_, err = dec.Token()
	}
	return err
}

// Item 5: optional -> required and nullable -> not nullable break messages
// already sent, at the top level and inside named objects.
func TestBreakingTightening(t *testing.T) {
	t.Parallel()
	base := strings.Replace(lockBase, "      label: {type: string}\n", "      label: {type: string, optional: true}\n      memo: {type: string, nullable: true}\n", 1)
	base = strings.Replace(base, "      amount: {type: decimal}\n", "      amount: {type: decimal, nullable: true}\n", 1)
	old := lockOf(t, base)
	for name, tt := range map[string]struct{ from, to, want string }{
		"optional to required":          {"note: {type: string, optional: true}", "note: {type: string}", "care.invoice.issued v1: field note became required"},
		"nullable to not nullable":      {"amount: {type: decimal, nullable: true}", "amount: {type: decimal}", "care.invoice.issued v1: field amount became not nullable"},
		"nested optional to required":   {"label: {type: string, optional: true}", "label: {type: string}", "care.invoice.issued v1: field lines[].label became required"},
		"nested nullable, not nullable": {"memo: {type: string, nullable: true}", "memo: {type: string}", "care.invoice.issued v1: field lines[].memo became not nullable"},
	} {
		t.Run(name, func(t *testing.T) {
			got := Breaking(old, lockOf(t, strings.Replace(base, tt.from, tt.to, 1)))
			if len(got) != 1 || !strings.HasPrefix(got[0], tt.want) {
				t.Fatalf("Breaking = %q, want one change starting with %q", got, tt.want)
			}
		})
	}
}

// Item 6: counts must be integers written as such, in range.
func TestCountsAreIntegers(t *testing.T) {
	t.Parallel()
	for field, want := range map[string]string{
		"s: {type: string, max_length: 10.0}":                     "bad.yaml:9:37: events[0].fields.s.max_length: max_length must be an integer",
		"s: {type: string, max_length: 1e2}":                      "bad.yaml:9:37: events[0].fields.s.max_length: max_length must be an integer",
		"s: {type: string, max_length: 99999999999999999999}":     "bad.yaml:9:37: events[0].fields.s.max_length: max_length 99999999999999999999 is out of range",
		"a: {type: array, items: {type: string}, min_items: 2.0}": "bad.yaml:9:58: events[0].fields.a.min_items: min_items must be an integer",
		"m: {type: map, values: {type: string}, min_items: 3e0}":  "bad.yaml:9:57: events[0].fields.m.min_items: min_items must be an integer",
	} {
		wantLine(t, parseErr(t, okEvent+"      "+field+"\n"), want)
	}
}

// Item 7: patterns outside the subset common to RE2 and ECMA-262 are
// refused with the construct named; portable ones pass.
func TestPatternsPortable(t *testing.T) {
	t.Parallel()
	for pat, want := range map[string]string{
		`^a\z`:          `\z`,
		`^\pL+$`:        `\p`,
		`(?i)^abc$`:     `(?i`,
		`^[[:alpha:]]$`: `[[:alpha:]`,
		`\Aabc`:         `\A`,
		`(?P<x>a)`:      `(?P<`,
		`(?<x>a)`:       `(?<x`,
		`^\s+$`:         `\s`,
		`\Qa.b\E`:       `\Q`,
		`^a{,3}$`:       `{`,
		`^[]a]$`:        `[`,
	} {
		src := okEvent + "      code: {type: string, pattern: '" + pat + "'}\n"
		got := parseErr(t, src)
		if !strings.Contains(got, "bad.yaml:9:37: events[0].fields.code.pattern: pattern is outside the subset") || !strings.Contains(got, want) {
			t.Errorf("pattern %s: error does not name %s:\n%s", pat, want, got)
		}
	}
	for _, pat := range []string{`^[A-Z]{2}$`, `^INV-[0-9]{4}-[0-9]{6}$`, `^(?:a|b)+\.c$`, `^[\w-]+$`, `^\d{3}\x41?$`, `^[^\]]*$`, `^a{2,}b{1,3}?$`} {
		if _, err := Parse("ok.yaml", []byte(okEvent+"      code: {type: string, pattern: '"+pat+"'}\n")); err != nil {
			t.Errorf("portable pattern %s refused: %v", pat, err)
		}
	}
}

// Item 8: NUL, BOM and other control characters are refused where they
// are written; a bad package name is a clear error, never a source dump.
func TestHostileTextAndPackageNames(t *testing.T) {
	t.Parallel()
	for name, tt := range map[string]struct{ src, want string }{
		"NUL in description": {strings.Replace(okEvent, "    key:", "    description: \"a\\0b\"\n    key:", 1), "bad.yaml:6:18: events[0].description: text contains a NUL character"},
		"BOM in topic":       {strings.Replace(okEvent, "topic: care.invoices", "topic: \"care\\uFEFF\"", 1), "bad.yaml:5:12: events[0].topic: text contains a byte-order mark"},
		"NUL in deprecation": {strings.Replace(okEvent, "    key:", "    deprecated: \"x\\0\"\n    key:", 1), "bad.yaml:6:17: events[0].deprecated: text contains a NUL character"},
		"NUL in pattern":     {okEvent + "      code: {type: string, pattern: \"a\\0\"}\n", "bad.yaml:9:37: events[0].fields.code.pattern: text contains a NUL character"},
		"escape in field":    {okEvent + "      code: {type: string, description: \"\\e[31mred\"}\n", "bad.yaml:9:41: events[0].fields.code.description: text contains the control character U+001B"},
		"newline in topic":   {strings.Replace(okEvent, "topic: care.invoices", "topic: \"care\\ninvoices\"", 1), "bad.yaml:5:12: events[0].topic: topic \"care\\ninvoices\" contains a control character"},
	} {
		t.Run(name, func(t *testing.T) { wantLine(t, parseErr(t, tt.src), tt.want) })
	}

	dir := t.TempDir()
	in := filepath.Join(dir, "outbox.yaml")
	write(t, in, []byte(okEvent))
	for _, tt := range []struct{ pkg, out, want string }{
		{"type", "events_gen.go", `-pkg: package name "type" is not a Go identifier`},
		{"1abc", "events_gen.go", `-pkg: package name "1abc" is not a Go identifier`},
		{"my-pkg", "events_gen.go", `-pkg: package name "my-pkg" is not a Go identifier`},
		{"", "1events/events_gen.go", `the package name derived from the output directory: package name "1events" is not a Go identifier`},
	} {
		var stdout, stderr bytes.Buffer
		args := []string{"-in", in, "-out", filepath.Join(dir, tt.out)}
		if tt.pkg != "" {
			args = append(args, "-pkg", tt.pkg)
		}
		code := run(args, &stdout, &stderr)
		if code != 1 || !strings.Contains(stderr.String(), tt.want) || strings.Contains(stderr.String(), "render") || strings.Count(stderr.String(), "\n") > 1 {
			t.Errorf("-pkg %q -out %s: exit %d, stderr:\n%s\nwant exit 1 and one line containing %s", tt.pkg, tt.out, code, &stderr, tt.want)
		}
	}
}

// Item 9: a bad event wire type gets its own message, not the field-type one.
func TestBadEventTypeMessage(t *testing.T) {
	t.Parallel()
	got := parseErr(t, strings.Replace(okEvent, "type: care.invoice.issued", "type: care.invoice-resent", 1))
	wantLine(t, got, `bad.yaml:3:11: events[0].type: event type "care.invoice-resent" must be lowercase words`)
	if strings.Contains(got, "not a builtin") {
		t.Fatalf("field-type message for an event type:\n%s", got)
	}
}

// Item 10: leftover schema files, outputs written over each other, schema
// files in a subfolder.
func TestGeneratedFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in := filepath.Join(dir, "outbox.yaml")
	out := filepath.Join(dir, "events_gen.go")
	write(t, in, []byte(lockBase))
	gen := func(wantCode int, extra ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		args := append([]string{"-in", in, "-out", out, "-pkg", "events"}, extra...)
		if code := run(args, &stdout, &stderr); code != wantCode {
			t.Fatalf("outboxgen %q exited %d, want %d\n%s%s", args, code, wantCode, &stdout, &stderr)
		}
		return stdout.String() + stderr.String()
	}
	gen(0)
	paid := filepath.Join(dir, "care.invoice.paid.v1.schema.json")
	if _, err := os.Stat(paid); err != nil {
		t.Fatal(err)
	}
	write(t, in, []byte(lockBase[:strings.Index(lockBase, "  - name: InvoicePaid")]))
	if msg := gen(1, "-check"); !strings.Contains(msg, paid+": left from an event version that no longer exists") {
		t.Fatalf("-check does not report the leftover schema:\n%s", msg)
	}
	gen(0)
	if _, err := os.Stat(paid); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("leftover schema not removed: %v", err)
	}
	gen(0, "-check")
	keep := filepath.Join(dir, "notes.schema.json") // not generated: never touched
	write(t, keep, []byte(`{"title": "mine"}`))
	gen(0, "-jsonschema", "{type}.v{version}.schema.json")
	if _, err := os.Stat(keep); err != nil {
		t.Fatal("a hand-written file matching the pattern was removed")
	}

	before, _ := os.ReadFile(out)
	if msg := gen(1, "-asyncapi", "Care.Invoice.Issued.v1.schema.json"); !strings.Contains(msg, "two generated files would be written to one path") {
		t.Fatalf("-asyncapi over a JSON Schema: %s", msg)
	}
	if msg := gen(1, "-asyncapi", "events_gen.go"); !strings.Contains(msg, "a .go file would be compiled into the package") {
		t.Fatalf("-asyncapi over -out: %s", msg)
	}
	if after, _ := os.ReadFile(out); !bytes.Equal(before, after) {
		t.Fatal("-asyncapi overwrote the Go file")
	}
	gen(1, "-asyncapi", "x.go")
	gen(1, "-jsonschema", "../{type}.json")

	gen(0, "-jsonschema", "schemas/{type}.json")
	if _, err := os.Stat(filepath.Join(dir, "schemas", "care.invoice.issued.json")); err != nil {
		t.Fatal(err)
	}
	gen(0, "-check", "-jsonschema", "schemas/{type}.json")
}

// Item 11: YAML errors are positioned where they are, an empty file says
// so, typos get hints, and a lock without events is refused.
func TestParseMessages(t *testing.T) {
	t.Parallel()
	wantLine(t, parseErr(t, "events:\n  - name: X\n    type: a.b\n   version: 1\n"), "bad.yaml:4:4: invalid YAML:")
	wantLine(t, parseErr(t, "events:\n  - name: X\n    topic: t\n    type: a: b\n"), "bad.yaml:4:12: invalid YAML: mapping values are not allowed in this context")
	wantLine(t, parseErr(t, ""), "bad.yaml:1:1: the file is empty")
	wantLine(t, parseErr(t, "# only a comment\n"), "bad.yaml:1:1: the file is empty")
	wantLine(t, parseErr(t, strings.Replace(okEvent, "    fields:", "    feilds:", 1)), `bad.yaml:7:5: events[0].feilds: unknown key "feilds" (did you mean "fields"?)`)
	wantLine(t, parseErr(t, okEvent+"      n: {type: string, optinal: true}\n"), `bad.yaml:9:25: events[0].fields.n.optinal: unknown key "optinal" (did you mean "optional"?)`)
	wantLine(t, parseErr(t, "event:\n"+strings.TrimPrefix(okEvent, "events:\n")), `bad.yaml:1:1: event: unknown key "event" (did you mean "events"?)`)

	for _, lock := range []string{`{}`, `{"events": []}`, `{"events": [{"type": "a"}]}`, `{"comment": "x", "events": [], "extra": 1}`} {
		if _, err := UnmarshalLock([]byte(lock)); err == nil {
			t.Errorf("UnmarshalLock(%s) accepted", lock)
		}
	}
	dir := t.TempDir()
	in, lockPath := filepath.Join(dir, "outbox.yaml"), filepath.Join(dir, "outbox.lock.json")
	write(t, in, []byte(lockBase))
	write(t, lockPath, []byte("{}"))
	var stderr bytes.Buffer
	if code := run([]string{"breaking", "-in", in, "-lock", lockPath}, io.Discard, &stderr); code != 1 || !strings.Contains(stderr.String(), "no events") {
		t.Fatalf("breaking against {}: exit %d, %s", code, &stderr)
	}
}

// A topic that is a Go keyword is no Go identifier: it is fine; and a
// diagnostic never writes control characters to the terminal.
func TestKeywordTopicAndPrintableDiagnostics(t *testing.T) {
	t.Parallel()
	if _, err := Parse("ok.yaml", []byte(strings.Replace(okEvent, "topic: care.invoices", "topic: func", 1))); err != nil {
		t.Fatal(err)
	}
	got := parseErr(t, okEvent+"      code: {type: string, pattern: \"\\\\\\e[31m\"}\n")
	if strings.ContainsRune(got, 0x1b) {
		t.Fatalf("diagnostic holds a raw ESC: %q", got)
	}
}
