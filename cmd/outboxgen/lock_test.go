package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const lockBase = `types:
  Line:
    fields:
      label: {type: string}
      price: {type: money, currency: EUR}
events:
  - name: InvoiceIssued
    type: care.invoice.issued
    version: 1
    topic: care.invoices
    key: invoice_id
    fields:
      invoice_id: {type: uuid}
      amount: {type: decimal}
      status: {type: enum, enum: [draft, issued]}
      lines: {type: array, items: {type: Line}}
      note: {type: string, optional: true}
  - name: InvoicePaid
    type: care.invoice.paid
    version: 1
    topic: care.invoices
    fields:
      at: {type: timestamp}
`

func lockOf(t *testing.T, src string) *Lock {
	t.Helper()
	spec, err := Parse("outbox.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	// Through JSON, as a committed lock file would be read.
	b, err := MarshalLock(BuildLock(spec))
	if err != nil {
		t.Fatal(err)
	}
	l, err := UnmarshalLock(b)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestBreaking(t *testing.T) {
	t.Parallel()
	old := lockOf(t, lockBase)
	tests := map[string]struct {
		from, to string
		want     []string // nil = not breaking
	}{
		"unchanged":                {"", "", nil},
		"new optional field":       {"      note: {type: string, optional: true}\n", "      note: {type: string, optional: true}\n      memo: {type: string, optional: true}\n", nil},
		"new enum value":           {"[draft, issued]", "[draft, issued, paid]", nil},
		"new version":              {"", "  - name: InvoicePaid\n    type: care.invoice.paid\n    version: 2\n    topic: care.invoices\n    fields:\n      at: {type: timestamp}\n", nil},
		"removed field":            {"      amount: {type: decimal}\n", "", []string{"care.invoice.issued v1: field amount removed"}},
		"type change":              {"amount: {type: decimal}", "amount: {type: string}", []string{"care.invoice.issued v1: field amount type changed from decimal to string"}},
		"new required field":       {"      note: {type: string, optional: true}\n", "      note: {type: string, optional: true}\n      memo: {type: string}\n", []string{"care.invoice.issued v1: new required field memo"}},
		"removed event":            {"  - name: InvoicePaid\n    type: care.invoice.paid\n    version: 1\n    topic: care.invoices\n    fields:\n      at: {type: timestamp}\n", "", []string{"care.invoice.paid v1: event version removed"}},
		"changed topic":            {"    topic: care.invoices\n    key:", "    topic: care.billing\n    key:", []string{`care.invoice.issued v1: topic changed from "care.invoices" to "care.billing"`}},
		"changed key":              {"key: invoice_id", "key: amount_key\n", nil},
		"removed enum value":       {"[draft, issued]", "[draft]", []string{"care.invoice.issued v1: field status enum value(s) removed: issued"}},
		"nested field removed":     {"      label: {type: string}\n", "", []string{"care.invoice.issued v1: field lines[].label removed"}},
		"nested currency change":   {"currency: EUR", "currency: CHF", []string{`care.invoice.issued v1: field lines[].price currency changed from "EUR" to "CHF"`}},
		"field became optional":    {"amount: {type: decimal}", "amount: {type: decimal, optional: true}", []string{"care.invoice.issued v1: field amount became optional"}},
		"renamed named type is ok": {"  Line:\n", "  Row:\n", nil},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			src := lockBase
			switch name {
			case "new version":
				src += tt.to
			case "changed key":
				src = strings.Replace(src, "key: invoice_id", "key: amount", 1)
				src = strings.Replace(src, "amount: {type: decimal}", "amount: {type: string}", 1)
				tt.want = []string{`care.invoice.issued v1: key changed from "invoice_id" to "amount"`, "care.invoice.issued v1: field amount type changed from decimal to string"}
			case "renamed named type is ok":
				src = strings.Replace(strings.Replace(src, tt.from, tt.to, 1), "{type: Line}", "{type: Row}", 1)
			default:
				if tt.from != "" && !strings.Contains(src, tt.from) {
					t.Fatalf("test bug: %q not in base", tt.from)
				}
				src = strings.Replace(src, tt.from, tt.to, 1)
			}
			got := Breaking(old, lockOf(t, src))
			if len(got) != len(tt.want) {
				t.Fatalf("Breaking = %q, want %d changes starting with %q", got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("change %d = %q, want prefix %q", i, got[i], w)
				}
			}
		})
	}
}

func TestCLI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in := filepath.Join(dir, "outbox.yaml")
	lock := filepath.Join(dir, "outbox.lock.json")
	write(t, in, []byte(lockBase))
	var out, errb bytes.Buffer
	runOK := func(args ...string) {
		t.Helper()
		out.Reset()
		errb.Reset()
		if code := run(args, &out, &errb); code != 0 {
			t.Fatalf("outboxgen %q exited %d: %s", args, code, errb.String())
		}
	}
	runOK("-in", in, "-out", filepath.Join(dir, "gen", "events_gen.go"), "-pkg", "events", "-jsonschema", "{name}.json", "-asyncapi", "api.json")
	for _, f := range []string{"events_gen.go", "InvoiceIssued.json", "InvoicePaid.json", "api.json"} {
		if _, err := os.Stat(filepath.Join(dir, "gen", f)); err != nil {
			t.Errorf("generate did not write %s: %v", f, err)
		}
	}
	runOK("check", "-in", in)
	runOK("schema", "-o", filepath.Join(dir, "outbox.schema.json"))
	if b, _ := os.ReadFile(filepath.Join(dir, "outbox.schema.json")); !bytes.Equal(b, metaSchemaJSON) {
		t.Error("schema subcommand did not write the embedded schema")
	}
	runOK("lock", "-in", in, "-lock", lock)
	runOK("breaking", "-in", in, "-lock", lock)

	write(t, in, []byte(strings.Replace(lockBase, "      amount: {type: decimal}\n", "", 1)))
	out.Reset()
	errb.Reset()
	if code := run([]string{"breaking", "-in", in, "-lock", lock}, &out, &errb); code != 1 {
		t.Fatalf("breaking exited %d, want 1", code)
	}
	if !strings.Contains(errb.String(), "1 breaking change(s)") || !strings.Contains(errb.String(), "field amount removed") {
		t.Fatalf("breaking output: %s", errb.String())
	}

	write(t, in, []byte("events: []\n"))
	errb.Reset()
	if code := run([]string{"check", "-in", in}, &out, &errb); code != 1 || !strings.HasPrefix(errb.String(), in+":1:9: events: minItems: got 0, want 1") {
		t.Fatalf("check on bad file: code %d, %s", code, errb.String())
	}
}
