package main

import (
	"errors"
	"strings"
	"testing"
)

const okEvent = `events:
  - name: InvoiceIssued
    type: care.invoice.issued
    version: 1
    topic: care.invoices
    key: invoice_id
    fields:
      invoice_id: {type: uuid}
`

// TestSchemaErrors checks that each malformed schema yields a
// file:line:column diagnostic naming the problem.
func TestSchemaErrors(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		src  string
		want []string // each must appear, in order, as a line of the error
	}{
		"unknown key in field": {okEvent + "      amount: {type: money, colour: red}\n",
			[]string{`bad.yaml:9:29: events[0].fields.amount.colour: unknown key "colour"`}},
		"unknown key in event with suggestion": {strings.Replace(okEvent, "    key: invoice_id\n", "    key: invoice_id\n    Topic: x\n", 1),
			[]string{`bad.yaml:7:5: events[0].Topic: unknown key "Topic" (did you mean "topic"?)`}},
		"unknown top-level key": {"evnts: []\n" + okEvent,
			[]string{`bad.yaml:1:1: evnts: unknown key "evnts"`}},
		"missing required key": {strings.Replace(okEvent, "    topic: care.invoices\n", "", 1),
			[]string{`bad.yaml:2:5: events[0]: missing required key "topic"`}},
		"unknown type": {okEvent + "      amount: {type: float}\n",
			[]string{`bad.yaml:9:22: events[0].fields.amount.type: unknown type "float"`}},
		"version not integer": {strings.Replace(okEvent, "version: 1", "version: one", 1),
			[]string{`bad.yaml:4:14: events[0].version: got string, want integer`}},
		"bad field name": {okEvent + "      TotalAmount: {type: decimal}\n",
			[]string{`bad.yaml:9:7: events[0].fields.TotalAmount: invalid field name "TotalAmount" (field names are snake_case`}},
		"rule on wrong type": {okEvent + "      paid: {type: bool, max_length: 3}\n",
			[]string{`bad.yaml:9:26: events[0].fields.paid.max_length: "max_length" is not allowed on a field of type bool`}},
		"key not a field": {strings.Replace(okEvent, "key: invoice_id", "key: patient_id", 1),
			[]string{`bad.yaml:6:10: events[0].key: key "patient_id" is not a field of this event`}},
		"key optional": {strings.Replace(okEvent, "{type: uuid}", "{type: uuid, optional: true}", 1),
			[]string{`bad.yaml:6:10: events[0].key: key field "invoice_id" must be required and not nullable`}},
		"duplicate key": {okEvent + "      invoice_id: {type: string}\n",
			[]string{`bad.yaml:9:7: events[0].fields.invoice_id: duplicate key "invoice_id"`}},
		"duplicate version": {okEvent + strings.TrimPrefix(okEvent, "events:\n"),
			[]string{`bad.yaml:11:14: events[1].version: event type "care.invoice.issued" version 1 is defined twice`}},
		"enum without values": {okEvent + "      status: {type: enum}\n",
			[]string{`bad.yaml:9:22: events[0].fields.status.type: type enum needs an enum list`}},
		"enum value Unknown reserved": {okEvent + "      status: {type: enum, enum: [ok, unknown]}\n",
			[]string{`bad.yaml:9:39: events[0].fields.status.enum[1]: enum value "unknown" is reserved`}},
		"array without items": {okEvent + "      lines: {type: array}\n",
			[]string{`bad.yaml:9:21: events[0].fields.lines.type: type array needs items`}},
		"invalid regexp": {okEvent + "      code: {type: string, pattern: \"(\"}\n",
			[]string{`bad.yaml:9:37: events[0].fields.code.pattern: pattern is not a valid Go (RE2) regular expression`}},
		"min above max": {okEvent + "      n: {type: int32, min: 5, max: 1}\n",
			[]string{`bad.yaml:9:29: events[0].fields.n.min: min 5 is greater than max 1`}},
		"decimal min on int": {okEvent + "      n: {type: int32, min: 1.5}\n",
			[]string{`bad.yaml:9:29: events[0].fields.n.min: min "1.5" must be an integer for type int32`}},
		"int32 overflow": {okEvent + "      n: {type: int32, max: 3000000000}\n",
			[]string{`bad.yaml:9:29: events[0].fields.n.max: max 3000000000 overflows int32`}},
		"bad currency": {okEvent + "      total: {type: money, currency: euro}\n",
			[]string{`bad.yaml:9:38: events[0].fields.total.currency: "euro" does not match ^[A-Z]{3}$`}},
		"go_type with rules": {okEvent + "      d: {type: int64, go_type: time.Duration, min: 0}\n",
			[]string{`bad.yaml:9:48: events[0].fields.d.min: "min" cannot be combined with go_type`}},
		"recursive required type": {"types:\n  Loop:\n    fields:\n      next: {type: Loop}\n" + okEvent,
			[]string{`bad.yaml:4:13: types.Loop.fields.next: type Loop contains itself through required field "next"`}},
		"bad type name": {"types:\n  line_item:\n    fields:\n      x: {type: string}\n" + okEvent,
			[]string{`bad.yaml:2:3: types.line_item: invalid type name "line_item" (type names are PascalCase`}},
		"type with fields and enum": {"types:\n  Odd:\n    enum: [a]\n    fields:\n      x: {type: string}\n" + okEvent,
			[]string{`bad.yaml:3:5: types.Odd: a type has either fields (object) or enum, not both`}},
		"several errors, in file order": {okEvent + "      a: {type: money, colour: red}\n      b: {type: nope}\n",
			[]string{`bad.yaml:9:24: events[0].fields.a.colour: unknown key "colour"`, `bad.yaml:10:17: events[0].fields.b.type: unknown type "nope"`}},
		"invalid YAML": {"events: [\n",
			[]string{`bad.yaml:1:1: invalid YAML: did not find expected node content`}},
		"alias": {"x: &a 1\n" + okEvent,
			[]string{`bad.yaml:1:1: x: unknown key "x"`}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("bad.yaml", []byte(tt.src))
			var se *SchemaError
			if !errors.As(err, &se) {
				t.Fatalf("Parse error %v (%T), want *SchemaError", err, err)
			}
			lines := strings.Split(err.Error(), "\n")
			i := 0
			for _, w := range tt.want {
				for i < len(lines) && !strings.HasPrefix(lines[i], w) {
					i++
				}
				if i == len(lines) {
					t.Fatalf("error lacks line starting with\n  %s\ngot:\n%s", w, err)
				}
			}
		})
	}
}

func TestParseValid(t *testing.T) {
	t.Parallel()
	spec, err := Parse("ok.yaml", []byte(okEvent))
	if err != nil {
		t.Fatal(err)
	}
	e := spec.Events[0]
	if e.GoName != "InvoiceIssued" || e.Version != 1 || e.Fields[0].GoName != "InvoiceID" || e.Pos != (Pos{2, 5}) {
		t.Fatalf("parsed %+v", e)
	}
}
