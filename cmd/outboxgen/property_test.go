package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The property test of the schema language: random valid schemas, drawn
// from the grammar of outbox.yaml, generate code that compiles and vets,
// and a random valid payload of each event round-trips through the
// generated JSON Schema, the Decoder, Validate and JSON encoding; random
// invalid schemas fail Parse with positioned diagnostics and never panic.
//
// OUTBOXGEN_PROP_SCHEMAS (default 6) sets how many valid schemas one run
// compiles (all in one throwaway module, one build), OUTBOXGEN_PROP_SEED
// (default 1, or "random") the seed, e.g.
//
//	OUTBOXGEN_PROP_SCHEMAS=60 OUTBOXGEN_PROP_SEED=random go test -run Property -v .

func propSeed(t *testing.T) uint64 {
	s := os.Getenv("OUTBOXGEN_PROP_SEED")
	switch s {
	case "":
		return 1
	case "random":
		seed := uint64(time.Now().UnixNano())
		t.Logf("OUTBOXGEN_PROP_SEED=%d", seed)
		return seed
	}
	seed, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("OUTBOXGEN_PROP_SEED: %v", err)
	}
	return seed
}

// Pools of names and texts, chosen to hit Go keywords, predeclared names,
// initialisms, the decoder's own identifiers and hostile-but-valid text.
var (
	propEventNames = []string{"Return", "Cfg", "Unknown", "Handle", "Package", "Select", "Type", "Map", "String", "Error", "Order", "Invoice", "Ping", "Shipment", "Go", "Func", "Nil", "Any"}
	propFieldNames = []string{"id", "type", "func", "map", "range", "order_id", "url", "ids", "api_key", "value", "string", "error", "len", "x", "created_at", "amount", "note", "tags", "is_ok", "default", "select", "go", "nil", "true", "cfg", "unknown", "v2", "http_url_ids"}
	propTypeNames  = []string{"Line", "Address", "Status", "Kind", "Any", "Nil", "Cfg", "Item", "Entry", "Level"}
	propTopics     = []string{"orders", "func", "orders/created", "orders_created", "заказы", "注文", "a b", "x.y-z", "Orders"}
	propTexts      = []string{"A plain sentence.", "Line one\nline two\n\nline four", "Uses */ and // and `backticks` and \"quotes\".", "<b>html</b> & <script>", "ünïcödé 日本語 😀", "Deprecated: looks like a directive", "\tindented with a tab", "100% {braces} [brackets] $dollar \\backslash"}
	propEnumValues = []string{"on hold", "on-hold2", "3-d secure", "ACTIVE", "é", "x.y", "a_b", "Zz9", "naïve", "日本"}
	// propPatterns pairs portable patterns with a string each matches.
	propPatterns = [][2]string{{`^[A-Z]{3}$`, "ABC"}, {`^[a-z]+(?:-[a-z]+)*$`, "ab-cd"}, {`^INV-[0-9]{4}$`, "INV-0042"}, {`^(?:x|y)\.z$`, "x.z"}, {`^[\w-]+$`, "a_b-9"}, {`^\d{2,3}$`, "123"}, {`[^\]]`, "]a"}}
	propStrings  = []string{"", "a", "ünï", "日本語", "😀x", "<&>", "\u2028", "quote\"back\\slash", "tab\tnl\n"}
)

// schemaGen writes one random valid schema.
type schemaGen struct {
	rng    *rand.Rand
	types  []string // named types declared so far (objects and enums)
	enums  map[string]bool
	b      strings.Builder
	topics []string
}

func (g *schemaGen) pick(s []string) string { return s[g.rng.IntN(len(s))] }
func (g *schemaGen) chance(p float64) bool  { return g.rng.Float64() < p }

// typeExpr returns the flow-mapping body of a field or element type.
// depth counts the collections around it; self is the object being
// defined (it may only be referenced through an optional field).
func (g *schemaGen) typeExpr(depth int, elem bool) string {
	kinds := []string{"string", "int32", "int64", "bool", "decimal", "money", "timestamp", "date", "uuid", "bytes", "enum"}
	if depth < 2 {
		kinds = append(kinds, "array", "map", "array")
	}
	if len(g.types) > 0 {
		kinds = append(kinds, "named", "named")
	}
	var parts []string
	switch k := g.pick(kinds); k {
	case "string":
		parts = append(parts, "type: string")
		if g.chance(0.3) {
			p := propPatterns[g.rng.IntN(len(propPatterns))]
			parts = append(parts, "pattern: "+strconv.Quote(p[0]))
			if g.chance(0.5) {
				parts = append(parts, fmt.Sprintf("max_length: %d", len([]rune(p[1]))+g.rng.IntN(3)))
			}
		} else if g.chance(0.3) {
			parts = append(parts, fmt.Sprintf("max_length: %d", 1+g.rng.IntN(20)))
		}
	case "int32", "int64":
		parts = append(parts, "type: "+k)
		lo, hi := int64(-1<<31), int64(1<<31-1)
		if k == "int64" {
			lo, hi = -1<<63, 1<<63-1
		}
		if g.chance(0.4) {
			lo = -g.rng.Int64N(1000)
			parts = append(parts, fmt.Sprintf("min: %d", lo))
		}
		if g.chance(0.4) {
			hi = g.rng.Int64N(1000)
			parts = append(parts, fmt.Sprintf("max: %d", hi))
		}
	case "decimal", "money":
		parts = append(parts, "type: "+k)
		if k == "money" && g.chance(0.5) {
			parts = append(parts, "currency: "+g.pick([]string{"EUR", "USD", "JPY"}))
		}
		if g.chance(0.4) {
			parts = append(parts, "min: "+strconv.Quote(g.pick([]string{"0", "0.01", "-5.5", "10"})))
		}
		if g.chance(0.3) {
			parts = append(parts, "max: 1000000")
		}
	case "timestamp":
		if depth > 1 {
			parts = append(parts, "type: date")
		} else {
			parts = append(parts, "type: timestamp")
		}
	case "enum":
		vals := slices.Clone(propEnumValues)
		g.rng.Shuffle(len(vals), func(i, j int) { vals[i], vals[j] = vals[j], vals[i] })
		q := make([]string, 1+g.rng.IntN(4))
		for i := range q {
			q[i] = strconv.Quote(vals[i])
		}
		parts = append(parts, "type: enum", "enum: ["+strings.Join(q, ", ")+"]")
	case "array", "map":
		key := map[string]string{"array": "items", "map": "values"}[k]
		parts = append(parts, "type: "+k, key+": {"+g.typeExpr(depth+1, true)+"}")
		if g.chance(0.3) {
			parts = append(parts, fmt.Sprintf("min_items: %d", g.rng.IntN(3)))
		}
	case "named":
		parts = append(parts, "type: "+g.pick(g.types))
	default:
		parts = append(parts, "type: "+k)
	}
	return strings.Join(parts, ", ")
}

// fields writes a fields mapping at indent; self, if set, may be
// referenced by one optional field.
func (g *schemaGen) fields(indent, self string, keyable bool) (key string) {
	names := slices.Clone(propFieldNames)
	g.rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	n := 1 + g.rng.IntN(6)
	fmt.Fprintf(&g.b, "%sfields:\n", indent)
	for i := range n {
		name := names[i]
		var parts []string
		if i == 0 && keyable && g.chance(0.6) {
			parts = append(parts, "type: "+g.pick([]string{"string", "uuid", "int32", "int64", "date"}))
			key = name
		} else if self != "" && i == n-1 && g.chance(0.5) {
			parts = append(parts, "type: "+self, "optional: true")
		} else {
			parts = append(parts, g.typeExpr(0, false))
			if g.chance(0.25) {
				parts = append(parts, "optional: true")
			}
			if g.chance(0.2) {
				parts = append(parts, "nullable: true")
			}
		}
		if g.chance(0.3) {
			parts = append(parts, "description: "+strconv.Quote(g.pick(propTexts)))
		}
		if g.chance(0.1) {
			parts = append(parts, "deprecated: "+strconv.Quote(g.pick(propTexts)))
		}
		fmt.Fprintf(&g.b, "%s  %s: {%s}\n", indent, name, strings.Join(parts, ", "))
	}
	return key
}

func (g *schemaGen) schema() string {
	g.b.Reset()
	g.types, g.enums = nil, map[string]bool{}
	if g.chance(0.5) {
		fmt.Fprintf(&g.b, "info:\n  title: %s\n  description: %s\n", strconv.Quote(g.pick(propTexts)), strconv.Quote(g.pick(propTexts)))
	}
	tnames := slices.Clone(propTypeNames)
	g.rng.Shuffle(len(tnames), func(i, j int) { tnames[i], tnames[j] = tnames[j], tnames[i] })
	if nt := g.rng.IntN(4); nt > 0 {
		g.b.WriteString("types:\n")
		for _, name := range tnames[:nt] {
			fmt.Fprintf(&g.b, "  %s:\n", name)
			if g.chance(0.3) {
				fmt.Fprintf(&g.b, "    description: %s\n", strconv.Quote(g.pick(propTexts)))
			}
			if g.chance(0.35) {
				q := []string{}
				for _, v := range propEnumValues[:1+g.rng.IntN(len(propEnumValues))] {
					q = append(q, strconv.Quote(v))
				}
				fmt.Fprintf(&g.b, "    enum: [%s]\n", strings.Join(q, ", "))
				g.enums[name] = true
			} else {
				g.fields("    ", name, false)
			}
			g.types = append(g.types, name)
		}
	}
	enames := slices.Clone(propEventNames)
	g.rng.Shuffle(len(enames), func(i, j int) { enames[i], enames[j] = enames[j], enames[i] })
	g.b.WriteString("events:\n")
	for i, name := range enames[:1+g.rng.IntN(3)] {
		fmt.Fprintf(&g.b, "  - name: %s\n    type: prop.%s_%d\n    version: 1\n    topic: %s\n", name, strings.ToLower(name), i, strconv.Quote(g.pick(propTopics)))
		if g.chance(0.3) {
			fmt.Fprintf(&g.b, "    description: %s\n", strconv.Quote(g.pick(propTexts)))
		}
		if g.chance(0.15) {
			g.b.WriteString("    deprecated: true\n")
		}
		body := g.b.String()
		g.b.Reset()
		key := g.fields("    ", "", true)
		fields := g.b.String()
		g.b.Reset()
		g.b.WriteString(body)
		if key != "" {
			fmt.Fprintf(&g.b, "    key: %q\n", key)
		}
		g.b.WriteString(fields)
	}
	return g.b.String()
}

// payloadGen draws a random valid payload of a parsed event.
type payloadGen struct {
	rng *rand.Rand
}

func (p *payloadGen) object(fields []*Field, depth int) map[string]any {
	m := map[string]any{}
	for _, f := range fields {
		if f.Optional && (depth > 2 || p.rng.IntN(4) == 0) {
			continue
		}
		if f.Nullable && !f.Optional && (depth > 2 || p.rng.IntN(5) == 0) {
			m[f.Name] = nil
			continue
		}
		// omitempty drops empty optional collections: keep them non-empty.
		m[f.Name] = p.value(f.T, depth, f.Optional)
	}
	return m
}

func (p *payloadGen) value(t *TypeRef, depth int, nonEmpty bool) any {
	r := p.rng
	switch t.Kind {
	case "string":
		if t.Pattern != "" {
			for _, pp := range propPatterns {
				if pp[0] == t.Pattern {
					return pp[1]
				}
			}
			panic("pattern without sample: " + t.Pattern)
		}
		s := propStrings[r.IntN(len(propStrings))]
		for t.MaxLength > 0 && len([]rune(s)) > t.MaxLength {
			s = string([]rune(s)[1:])
		}
		return s
	case "uuid":
		b := make([]byte, 16)
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		h := fmt.Sprintf("%x", b)
		return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
	case "int32", "int64":
		lo, hi := int64(-1<<31), int64(1<<31-1)
		if t.Kind == "int64" {
			lo, hi = -1<<63, 1<<63-1
		}
		if t.Min != "" {
			lo = mustInt(t.Min)
		}
		if t.Max != "" {
			hi = mustInt(t.Max)
		}
		cands := []int64{lo, hi, max(lo, min(hi, 0)), max(lo, min(hi, 7))}
		return json.Number(strconv.FormatInt(cands[r.IntN(len(cands))], 10))
	case "bool":
		return r.IntN(2) == 0
	case "decimal":
		return p.decimal(t)
	case "money":
		cur := t.Currency
		if cur == "" {
			cur = []string{"EUR", "USD", "XAF"}[r.IntN(3)]
		}
		return map[string]any{"amount": p.decimal(t), "currency": cur}
	case "timestamp":
		return []string{"2024-02-29T12:34:56Z", "1970-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z", "2000-01-01T00:00:00.5Z", "0001-01-01T00:00:01Z"}[r.IntN(5)]
	case "date":
		return []string{"2024-02-29", "0001-01-01", "9999-12-31"}[r.IntN(3)]
	case "bytes":
		b := make([]byte, r.IntN(6))
		if nonEmpty && len(b) == 0 {
			b = []byte{0}
		}
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return base64.StdEncoding.EncodeToString(b)
	case "enum":
		vs := t.EnumValues()
		return vs[r.IntN(len(vs))]
	case "object":
		return p.object(t.Named.Fields, depth+1)
	case "array", "map":
		n := r.IntN(3)
		if t.HasMinItem {
			n = max(n, t.MinItems)
		}
		if nonEmpty {
			n = max(n, 1)
		}
		if t.Kind == "array" {
			s := make([]any, n)
			for i := range s {
				s[i] = p.value(t.Elem, depth+1, false)
			}
			return s
		}
		m := map[string]any{}
		keys := []string{"", "k", "ключ", "日本", "a.b", "😀"}
		for i := range n {
			m[keys[i%len(keys)]+strings.Repeat("x", i/len(keys))] = p.value(t.Elem, depth+1, false)
		}
		return m
	}
	panic("kind " + t.Kind)
}

func (p *payloadGen) decimal(t *TypeRef) string {
	switch {
	case t.Min != "" && p.rng.IntN(2) == 0:
		return t.Min
	case t.Max != "" && p.rng.IntN(2) == 0:
		return t.Max
	case t.Min != "":
		return t.Min
	case t.Max != "":
		return "-" + strings.TrimPrefix(t.Max, "-") // below any positive max; equals the max when it is 0
	}
	return []string{"0", "12.50", "-0.001", "123456789012345678901234567890.123456789"}[p.rng.IntN(4)]
}

// propRunner is the runner of the throwaway module: it reads JSON lines
// {pkg, type, payload} and writes {payload, meta, err} after decoding each
// through the package's Decoder and re-encoding it with OutboxEvent.
const propRunner = `package main

import (
	"bufio"
	"encoding/json"
	"os"
%s)

var roundTrips = map[string]func(string, []byte) ([]byte, string, error){
%s}

func main() {
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	enc := json.NewEncoder(os.Stdout)
	for sc.Scan() {
		var in struct {
			Pkg, Type string
			Payload   json.RawMessage
		}
		if err := json.Unmarshal(sc.Bytes(), &in); err != nil {
			panic(err)
		}
		out, meta, err := roundTrips[in.Pkg](in.Type, in.Payload)
		res := struct {
			Payload json.RawMessage
			Meta    string
			Err     string
		}{Payload: out, Meta: meta}
		if err != nil {
			res.Err = err.Error()
		}
		if err := enc.Encode(res); err != nil {
			panic(err)
		}
	}
}
`

// roundTripFile is added to each generated package: ZzRoundTrip decodes
// payload through the generated Decoder and re-encodes the event.
func roundTripFile(pkg string, spec *Spec) string {
	var b strings.Builder
	fmt.Fprintf(&b, `package %s

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/outboxkit/outboxkit/framework/outbox"
)

func ZzRoundTrip(typ string, payload []byte) (out []byte, meta string, err error) {
	d, err := NewDecoder(DecoderConfig{})
	if err != nil {
		return nil, "", err
	}
	encode := func(ev interface{ OutboxEvent() (*outbox.Event, error) }) error {
		e, err := ev.OutboxEvent()
		if err != nil {
			return err
		}
		out, meta = e.Payload, e.Type+"|"+e.Topic+"|"+e.Key+"|"+e.Headers[HeaderEventVersion]
		return nil
	}
`, pkg)
	for _, e := range spec.Events {
		fmt.Fprintf(&b, "\td.On%s(func(_ context.Context, _ *message.Message, ev %s) error { return encode(ev) })\n", e.Name, e.GoName)
	}
	b.WriteString(`	msg := message.NewMessage("0190b1f4-7c1e-7a6e-9f3a-2b1c4d5e6f70", payload)
	msg.Metadata.Set(outbox.MetadataEventType, typ)
	err = d.Handle(msg)
	return out, meta, err
}
`)
	return b.String()
}

type propCase struct {
	pkg     string
	event   *Event
	payload []byte
	schema  []byte // the event's generated JSON Schema
	bad     string // "" for a valid payload, else why it must be refused
}

func TestPropertyRandomSchemas(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs the go tool")
	}
	n := 6
	if s := os.Getenv("OUTBOXGEN_PROP_SCHEMAS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			t.Fatalf("OUTBOXGEN_PROP_SCHEMAS: %v", err)
		}
	}
	seed := propSeed(t)
	rng := rand.New(rand.NewPCG(seed, 17))
	sg := &schemaGen{rng: rng}
	pg := &payloadGen{rng: rng}
	tmp := scratchModule(t, "prop")
	var imports, entries strings.Builder
	var cases []propCase
	skipped := 0
	for i := 0; i < n; i++ {
		src := sg.schema()
		spec, err := Parse("prop.yaml", []byte(src))
		if err != nil {
			// The grammar above can draw names that collide (e.g. an
			// inline enum's type and another event's constant): that must
			// be a positioned collision report, anything else is a bug.
			var se *SchemaError
			if errors.As(err, &se) && !slices.ContainsFunc(se.Diags, func(d Diag) bool { return !strings.Contains(d.Msg, "collides with") }) {
				skipped++
				if skipped > n {
					t.Fatalf("seed %d: most random schemas collide; last:\n%s\n%v", seed, src, err)
				}
				i--
				continue
			}
			t.Fatalf("seed %d: random valid schema refused: %v\n%s", seed, err, src)
		}
		pkg := fmt.Sprintf("s%d", i)
		files, err := Render(spec, pkg, "events_gen.go", "{type}.v{version}.schema.json", "asyncapi.json")
		if err != nil {
			t.Fatalf("seed %d: accepted schema does not render: %v\n%s", seed, err, src)
		}
		for _, f := range files {
			write(t, filepath.Join(tmp, pkg, f.Name), f.Data)
		}
		write(t, filepath.Join(tmp, pkg, "outbox.yaml"), []byte(src))
		write(t, filepath.Join(tmp, pkg, "zz_roundtrip.go"), []byte(roundTripFile(pkg, spec)))
		fmt.Fprintf(&imports, "\t%s \"example.com/prop/%s\"\n", pkg, pkg)
		fmt.Fprintf(&entries, "\t%q: %s.ZzRoundTrip,\n", pkg, pkg)
		for k, e := range spec.Events {
			schema := files[1+k].Data
			for range 4 {
				b, err := json.Marshal(pg.object(e.Fields, 0))
				if err != nil {
					t.Fatal(err)
				}
				cases = append(cases, propCase{pkg: pkg, event: e, payload: b, schema: schema})
			}
			cases = append(cases, propCase{pkg: pkg, event: e, payload: []byte("null"), schema: schema, bad: "null payload"})
			// A null element of a collection (item 3 of issue 17).
			for _, f := range e.Fields {
				if (f.T.Kind == "array" || f.T.Kind == "map") && nilable(f.T.Elem) {
					m := pg.object(e.Fields, 0)
					if f.T.Kind == "array" {
						m[f.Name] = []any{nil}
					} else {
						m[f.Name] = map[string]any{"k": nil}
					}
					b, _ := json.Marshal(m)
					cases = append(cases, propCase{pkg: pkg, event: e, payload: b, schema: schema, bad: "null element in " + f.Name})
				}
			}
		}
	}
	write(t, filepath.Join(tmp, "cmd", "runner", "main.go"), []byte(fmt.Sprintf(propRunner, imports.String(), entries.String())))
	goIn(t, tmp, "vet", "./...")
	goIn(t, tmp, "build", "-o", "runner", "./cmd/runner")

	var in bytes.Buffer
	for _, c := range cases {
		line, _ := json.Marshal(struct {
			Pkg, Type string
			Payload   json.RawMessage
		}{c.pkg, c.event.Type, c.payload})
		in.Write(append(line, '\n'))
	}
	cmd := exec.Command(filepath.Join(tmp, "runner"))
	cmd.Stdin = &in
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("runner: %v", err)
	}
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	if len(lines) != len(cases) {
		t.Fatalf("runner answered %d of %d payloads", len(lines), len(cases))
	}
	schemas := map[string]*jsonschemaValidator{}
	for i, c := range cases {
		var res struct {
			Payload json.RawMessage
			Meta    string
			Err     string
		}
		if err := json.Unmarshal(lines[i], &res); err != nil {
			t.Fatal(err)
		}
		v, ok := schemas[string(c.schema)]
		if !ok {
			v = &jsonschemaValidator{compileJSONSchema(t, c.schema)}
			schemas[string(c.schema)] = v
		}
		where := fmt.Sprintf("seed %d, package %s (%s), event %s, payload %s", seed, c.pkg, filepath.Join(tmp, c.pkg, "outbox.yaml"), c.event.Type, c.payload)
		schemaErr := v.s.Validate(mustJSON(t, string(c.payload)))
		if c.bad != "" {
			if schemaErr == nil || res.Err == "" {
				t.Errorf("%s: %s: JSON Schema error %v, decoder/Validate error %q; want both to refuse it", where, c.bad, schemaErr, res.Err)
			}
			continue
		}
		if schemaErr != nil {
			t.Errorf("%s: the generated JSON Schema refuses a valid payload: %v", where, schemaErr)
			continue
		}
		if res.Err != "" {
			t.Errorf("%s: decode, Validate or encode failed: %s", where, res.Err)
			continue
		}
		if !sameJSON(t, c.payload, res.Payload) {
			t.Errorf("%s: re-encoded as %s", where, res.Payload)
		}
		wantMeta := c.event.Type + "|" + c.event.Topic + "|" + keyOf(t, c) + "|1"
		if res.Meta != wantMeta {
			t.Errorf("%s: type|topic|key|version = %q, want %q", where, res.Meta, wantMeta)
		}
	}
	t.Logf("seed %d: %d schemas compiled (%d colliding draws refused), %d payloads", seed, n, skipped, len(cases))
}

type jsonschemaValidator struct {
	s interface{ Validate(any) error }
}

func keyOf(t *testing.T, c propCase) string {
	if c.event.Key == "" {
		return ""
	}
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(c.payload))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(m[c.event.Key])
}

func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	dec := func(x []byte) any {
		var v any
		d := json.NewDecoder(bytes.NewReader(x))
		d.UseNumber()
		if err := d.Decode(&v); err != nil {
			t.Fatalf("%v: %s", err, x)
		}
		return v
	}
	return reflect.DeepEqual(dec(a), dec(b))
}

// propMutations turn a valid random schema into an invalid one.
var propMutations = []struct {
	name string
	f    func(src string, rng *rand.Rand) string
}{
	{"unknown key", func(s string, _ *rand.Rand) string {
		return strings.Replace(s, "    version: 1\n", "    version: 1\n    colour: red\n", 1)
	}},
	{"unknown type", func(s string, _ *rand.Rand) string {
		return strings.Replace(s, "    fields:\n      ", "    fields:\n      zz_float: {type: float}\n      ", 1)
	}},
	{"non-portable pattern", func(s string, _ *rand.Rand) string {
		return strings.Replace(s, "    fields:\n      ", "    fields:\n      zz_p: {type: string, pattern: \"^a\\\\z\"}\n      ", 1)
	}},
	{"float count", func(s string, _ *rand.Rand) string {
		return strings.Replace(s, "    fields:\n      ", "    fields:\n      zz_c: {type: string, max_length: 10.0}\n      ", 1)
	}},
	{"float version", func(s string, _ *rand.Rand) string { return strings.Replace(s, "version: 1\n", "version: 1.0\n", 1) }},
	{"NUL in topic", func(s string, _ *rand.Rand) string { return strings.Replace(s, "    topic: \"", "    topic: \"\\0", 1) }},
	{"bad event type", func(s string, _ *rand.Rand) string { return strings.Replace(s, "type: prop.", "type: Prop-", 1) }},
	{"missing topic", func(s string, _ *rand.Rand) string {
		i := strings.Index(s, "    topic: ")
		return s[:i] + s[i+strings.Index(s[i:], "\n")+1:]
	}},
	{"duplicate event", func(s string, _ *rand.Rand) string {
		i := strings.Index(s, "  - name: ")
		return s + s[i:]
	}},
	{"payload key collision", func(s string, _ *rand.Rand) string {
		i := strings.Index(s, "  - name: ") + len("  - name: ")
		name := s[i : i+strings.Index(s[i:], "\n")]
		if strings.Contains(s, "\ntypes:\n") || strings.HasPrefix(s, "types:\n") {
			return strings.Replace(s, "types:\n", "types:\n  "+name+"Payload:\n    enum: [a]\n", 1)
		}
		return "types:\n  " + name + "Payload:\n    enum: [a]\n" + s
	}},
	{"tab indentation", func(s string, _ *rand.Rand) string { return strings.Replace(s, "\n    version", "\n\tversion", 1) }},
	{"field collides with method", func(s string, _ *rand.Rand) string {
		return strings.Replace(s, "    fields:\n      ", "    fields:\n      zz_v: {type: string, go_name: Validate}\n      ", 1)
	}},
	{"go_type keyword", func(s string, _ *rand.Rand) string {
		return strings.Replace(s, "    fields:\n      ", "    fields:\n      zz_g: {type: string, go_type: func}\n      ", 1)
	}},
}

// TestPropertyInvalidSchemas: every mutation above of a random valid
// schema fails Parse with diagnostics positioned inside the file; random
// byte edits either fail the same way or give a schema that renders with
// no identifier declared twice. Nothing panics.
func TestPropertyInvalidSchemas(t *testing.T) {
	t.Parallel()
	seed := propSeed(t)
	rng := rand.New(rand.NewPCG(seed, 18))
	sg := &schemaGen{rng: rng}
	rounds := 60
	if s := os.Getenv("OUTBOXGEN_PROP_SCHEMAS"); s != "" {
		n, _ := strconv.Atoi(s)
		rounds = max(rounds, 10*n)
	}
	positioned := func(src string, err error) {
		t.Helper()
		var se *SchemaError
		if !errors.As(err, &se) || len(se.Diags) == 0 {
			t.Fatalf("seed %d: Parse error %v (%T), want positioned diagnostics\n%s", seed, err, err, src)
		}
		lines := strings.Count(src, "\n") + 1
		for _, d := range se.Diags {
			if d.Pos.Line < 1 || d.Pos.Line > lines || d.Pos.Col < 0 || d.File != "prop.yaml" || d.Msg == "" {
				t.Fatalf("seed %d: diagnostic %q is not positioned inside the file (%d lines)\n%s", seed, d, lines, src)
			}
		}
	}
	edits := 0
	for range rounds {
		src := sg.schema()
		for _, m := range propMutations {
			bad := m.f(src, rng)
			_, err := Parse("prop.yaml", []byte(bad))
			if err == nil {
				t.Fatalf("seed %d: mutation %q accepted:\n%s", seed, m.name, bad)
			}
			positioned(bad, err)
		}
		const alphabet = ":{}[]-,\"'\t\n#&*!|>%@` x0_\x00\xff\xef\xbb\xbf"
		for range 10 {
			b := []byte(src)
			for range 1 + rng.IntN(3) {
				i := rng.IntN(len(b))
				c := alphabet[rng.IntN(len(alphabet))]
				switch rng.IntN(3) {
				case 0:
					b = slices.Delete(b, i, i+1)
				case 1:
					b = slices.Insert(b, i, c)
				default:
					b[i] = c
				}
			}
			spec, err := Parse("prop.yaml", b)
			if err != nil {
				positioned(string(b), err)
				continue
			}
			edits++
			files, err := Render(spec, "p", "events_gen.go", "{type}.v{version}.schema.json", "asyncapi.json")
			if err != nil {
				t.Fatalf("seed %d: accepted schema does not render: %v\n%s", seed, err, b)
			}
			checkDecls(t, files[0].Data, b)
		}
	}
	t.Logf("seed %d: %d schemas x %d mutations refused; %d byte-edited schemas still valid rendered", seed, rounds, len(propMutations), edits)
}
