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
		"await_ack bad duration": {strings.Replace(okEvent, "    key: invoice_id\n", "    key: invoice_id\n    await_ack: {deadline: soon}\n", 1),
			[]string{`bad.yaml:7:27: events[0].await_ack.deadline: deadline "soon" is not a Go duration`}},
		"await_ack deadline too long": {strings.Replace(okEvent, "    key: invoice_id\n", "    key: invoice_id\n    await_ack: {deadline: 9000h}\n", 1),
			[]string{`bad.yaml:7:27: events[0].await_ack.deadline: deadline 9000h is out of range`}},
		"await_ack without deadline": {strings.Replace(okEvent, "    key: invoice_id\n", "    key: invoice_id\n    await_ack: {max_resends: 2}\n", 1),
			[]string{`bad.yaml:7:16: events[0].await_ack: missing required key "deadline"`}},
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
		"two events with colliding Go names": {okEvent + "  - name: Invoice\n    go_name: InvoiceIssued\n    type: care.invoice\n    version: 1\n    topic: care.invoices\n    fields:\n      x: {type: string}\n",
			[]string{`bad.yaml:10:14: events[1].go_name: Go name InvoiceIssued (struct of event care.invoice v1) collides with struct of event care.invoice.issued v1 at bad.yaml:2:11; set go_name on one of the events`}},
		"event struct colliding with another event's constant": {okEvent + "  - name: InvoiceIssuedType\n    type: care.other\n    version: 1\n    topic: care.invoices\n    fields:\n      x: {type: string}\n",
			[]string{`bad.yaml:9:11: events[1].name: Go name InvoiceIssuedType (struct of event care.other v1) collides with constant of event care.invoice.issued v1 at bad.yaml:2:11`}},
		"one name for two event types": {okEvent + "  - name: InvoiceIssued\n    type: care.invoice.other\n    version: 2\n    topic: care.invoices\n    fields:\n      x: {type: string}\n",
			[]string{`bad.yaml:9:11: events[1].name: event name "InvoiceIssued" is already used by event type "care.invoice.issued"`}},
		"inline enum named like a constant": {okEvent + "      type: {type: enum, enum: [a, b]}\n",
			[]string{`bad.yaml:9:20: events[0].fields.type.type: Go name InvoiceIssuedType (inline enum type of events[0].fields.type) collides with constant of event care.invoice.issued v1 at bad.yaml:2:11; set go_name on the field or declare a named enum under types`}},
		"type named like generated code": {"types:\n  Decoder:\n    enum: [a]\n" + okEvent,
			[]string{`bad.yaml:2:3: types.Decoder: Go name Decoder (type Decoder) collides with an identifier the generated code always declares; rename the type`}},
		"type named like an enum constant": {"types:\n  Status:\n    enum: [a, b]\n  StatusA:\n    fields:\n      x: {type: string}\n" + okEvent,
			[]string{`bad.yaml:4:3: types.StatusA: Go name StatusA (type StatusA) collides with constant of enum Status value "a" at bad.yaml:3:12; rename the type`}},
		"enum values colliding by case": {okEvent + "      status: {type: enum, enum: [Active, active]}\n",
			[]string{`bad.yaml:9:43: events[0].fields.status.enum[1]: enum value "active" maps to the same Go name Active as value "Active" (Go names ignore case, spaces and punctuation); rename one of them`}},
		"enum values colliding by punctuation, odd values": {okEvent + "      status: {type: enum, enum: [\"on hold\", on-hold, \" x\", \"---\", \"a\\tb\"]}\n",
			[]string{
				`bad.yaml:9:46: events[0].fields.status.enum[1]: enum value "on-hold" maps to the same Go name OnHold as value "on hold"`,
				`bad.yaml:9:55: events[0].fields.status.enum[2]: enum value " x" has leading or trailing spaces`,
				`bad.yaml:9:61: events[0].fields.status.enum[3]: enum value "---" has no letter or digit`,
				`bad.yaml:9:68: events[0].fields.status.enum[4]: enum value "a\tb" contains a control character`,
			}},
		"empty enum value": {okEvent + "      status: {type: enum, enum: [\"\"]}\n",
			[]string{`bad.yaml:9:35: events[0].fields.status.enum[0]: `}},
		"key not allowed here": {okEvent + "      m: {type: array, items: {type: string, nullable: true}}\n",
			[]string{`bad.yaml:9:46: events[0].fields.m.items.nullable: unknown key "nullable" (not allowed here)`}},
		"invalid YAML": {"events: [\n",
			[]string{`bad.yaml:1:9: invalid YAML: did not find expected node content`}},
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
