package main

import (
	"bytes"
	"fmt"
	"go/token"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// decoderNames are event names that once broke the generated decoder
// (issue 17 items 1 and 2): every Go keyword and some predeclared names,
// capitalized, and names of the decoder's own members.
func decoderNames() []string {
	var out []string
	for _, kw := range strings.Fields("break case chan const continue default defer else fallthrough for func go goto if import interface map package range return select struct switch type var") {
		if !token.IsKeyword(kw) {
			panic(kw)
		}
		out = append(out, strings.ToUpper(kw[:1])+kw[1:])
	}
	return append(out, "Cfg", "Unknown", "Handle", "String", "Error", "Nil", "True", "Len", "Any", "Iota", "Make")
}

// nilInnerSchema has collections of nilable elements (issue 17 item 3).
const nilInnerSchema = `events:
  - name: GridUpdated
    type: test.grid.updated
    version: 1
    topic: grids
    fields:
      grid: {type: array, items: {type: array, items: {type: string}}}
      lists: {type: map, values: {type: array, items: {type: int64}}}
      nested: {type: map, values: {type: map, values: {type: int32}}}
      blobs: {type: array, items: {type: bytes}}
`

const nilInnerTest = `package nilinner

import (
	"strings"
	"testing"
)

func TestNilInner(t *testing.T) {
	ok := GridUpdated{Grid: [][]string{{}}, Lists: map[string][]int64{"k": {}}, Nested: map[string]map[string]int32{"k": {}}, Blobs: [][]byte{{}}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for path, bad := range map[string]GridUpdated{
		"grid[0]":     {Grid: [][]string{nil}, Lists: ok.Lists, Nested: ok.Nested, Blobs: ok.Blobs},
		"lists[\"k\"]":  {Grid: ok.Grid, Lists: map[string][]int64{"k": nil}, Nested: ok.Nested, Blobs: ok.Blobs},
		"nested[\"k\"]": {Grid: ok.Grid, Lists: ok.Lists, Nested: map[string]map[string]int32{"k": nil}, Blobs: ok.Blobs},
		"blobs[0]":    {Grid: ok.Grid, Lists: ok.Lists, Nested: ok.Nested, Blobs: [][]byte{nil}},
	} {
		err := bad.Validate()
		if err == nil || !strings.Contains(err.Error(), path+": must not be nil") {
			t.Errorf("%s: Validate = %v", path, err)
		}
	}
}
`

// decodeSchema exercises the decoder and Validate edge cases of item 12.
const decodeSchema = `events:
  - name: Stamped
    type: test.stamped
    version: 1
    topic: stamps
    fields:
      at: {type: timestamp}
      note: {type: string, optional: true}
      bomb: {type: string, go_type: Bomb, optional: true}
`

const decodeTest = `package decode

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/outboxkit/outboxkit/framework/outbox"
)

type Bomb string

func (Bomb) MarshalJSON() ([]byte, error) { return nil, errors.New("boom") }

func TestNullPayload(t *testing.T) {
	d, err := NewDecoder(DecoderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	called := false
	d.OnStamped(func(context.Context, *message.Message, Stamped) error { called = true; return nil })
	for _, p := range []string{"null", " null ", "[]", "\"x\"", "1", ""} {
		msg := message.NewMessage("0190b1f4-7c1e-7a6e-9f3a-2b1c4d5e6f70", []byte(p))
		msg.Metadata.Set(outbox.MetadataEventType, StampedType)
		if err := d.Handle(msg); !errors.Is(err, ErrMalformedEvent) || called {
			t.Errorf("payload %q: Handle = %v, handler called %v", p, err, called)
		}
	}
}

func TestYearRange(t *testing.T) {
	for _, at := range []time.Time{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 23, 0, 0, 0, time.FixedZone("x", -5*3600)), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)} {
		if err := (Stamped{At: at}).Validate(); err == nil {
			t.Errorf("%v: Validate accepted", at)
		}
		if _, err := (Stamped{At: at}).OutboxEvent(); !errors.Is(err, outbox.ErrInvalidEvent) {
			t.Errorf("%v: OutboxEvent = %v", at, err)
		}
	}
	b := Bomb("x")
	if _, err := (Stamped{At: time.Now(), Bomb: &b}).OutboxEvent(); !errors.Is(err, outbox.ErrInvalidEvent) {
		t.Errorf("encode error %v does not wrap outbox.ErrInvalidEvent", err)
	}
	if _, err := (Stamped{At: time.Date(9999, 12, 31, 23, 0, 0, 0, time.UTC)}).OutboxEvent(); err != nil {
		t.Error(err)
	}
}
`

// TestGeneratedEdgeCases compiles, vets and tests, in one throwaway
// module, the generated code of issue 17 items 1, 2, 3 and 12: events
// named after keywords and the decoder's members, nil inner collections,
// null payloads and out-of-range timestamps.
func TestGeneratedEdgeCases(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs the go tool")
	}
	tmp := scratchModule(t, "edgecases")
	for _, name := range decoderNames() {
		pkg := "kw" + strings.ToLower(name)
		renderInto(t, tmp, pkg, fmt.Sprintf("events:\n  - name: %q\n    type: test.%s\n    version: 1\n    topic: t\n    fields:\n      order_id: {type: uuid}\n", name, strings.ToLower(name)))
	}
	_, files := renderInto(t, tmp, "nilinner", nilInnerSchema)
	write(t, tmp+"/nilinner/nilinner_test.go", []byte(nilInnerTest))
	_, dfiles := renderInto(t, tmp, "decode", decodeSchema)
	write(t, tmp+"/decode/decode_test.go", []byte(decodeTest))
	if !bytes.Contains(dfiles[0].Data, []byte("// Optional: nil is encoded as an absent field.\n\tNote *string")) {
		t.Errorf("pointer field documented as if empty were omitted:\n%s", dfiles[0].Data)
	}

	// The generated JSON Schema agrees with Validate on null elements.
	schema := compileJSONSchema(t, files[1].Data)
	ok := `{"grid":[[]],"lists":{"k":[]},"nested":{"k":{}},"blobs":[""]}`
	if err := schema.Validate(mustJSON(t, ok)); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{`{"grid":[null],"lists":{},"nested":{},"blobs":[]}`, `{"grid":[],"lists":{"k":null},"nested":{},"blobs":[]}`, `{"grid":[],"lists":{},"nested":{"k":null},"blobs":[]}`, `{"grid":[],"lists":{},"nested":{},"blobs":[null]}`} {
		if schema.Validate(mustJSON(t, bad)) == nil {
			t.Errorf("JSON Schema accepts %s", bad)
		}
	}
	for _, args := range [][]string{{"vet", "./..."}, {"test", "-count=1", "./nilinner", "./decode"}} {
		goIn(t, tmp, args...)
	}
}

func compileJSONSchema(t *testing.T, b []byte) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("event.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("event.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustJSON(t *testing.T, s string) any {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return v
}
