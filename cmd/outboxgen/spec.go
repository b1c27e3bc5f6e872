package main

import (
	"bytes"
	"cmp"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"go/token"
	"io"
	"math"
	"math/big"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
	"gopkg.in/yaml.v3"
)

//go:embed outbox.schema.json
var metaSchemaJSON []byte

// Pos is a 1-based line:column position in the schema file.
type Pos struct{ Line, Col int }

// Diag is one problem found in a schema file.
type Diag struct {
	File string
	Pos  Pos
	Path string // JSON-pointer-like path, for context
	Msg  string
}

func (d Diag) String() string {
	d.Msg = printable(d.Msg) // messages may quote hostile input
	// A line without a known column.
	if d.Pos.Col == 0 {
		if d.Path != "" {
			return fmt.Sprintf("%s:%d: %s: %s", d.File, d.Pos.Line, d.Path, d.Msg)
		}
		return fmt.Sprintf("%s:%d: %s", d.File, d.Pos.Line, d.Msg)
	}
	if d.Path != "" {
		return fmt.Sprintf("%s:%d:%d: %s: %s", d.File, d.Pos.Line, d.Pos.Col, d.Path, d.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", d.File, d.Pos.Line, d.Pos.Col, d.Msg)
}

// SchemaError lists every problem found in a schema file, in file order.
type SchemaError struct{ Diags []Diag }

func (e *SchemaError) Error() string {
	lines := make([]string, len(e.Diags))
	for i, d := range e.Diags {
		lines[i] = d.String()
	}
	return strings.Join(lines, "\n")
}

// Spec is a parsed, validated schema file.
type Spec struct {
	File   string
	Info   Info
	Types  []*NamedType
	Events []*Event
	types  map[string]*NamedType
}

// Info is the optional info section.
type Info struct{ Title, Version, Description string }

// NamedType is an entry of the types section: an object or an enum.
type NamedType struct {
	Name        string
	Description string
	Fields      []*Field // object
	Enum        []string // enum
	Pos         Pos
}

// IsEnum reports whether the named type is an enum.
func (n *NamedType) IsEnum() bool { return n.Enum != nil }

// Event is one (type, version) entry of the events section.
type Event struct {
	Name          string // schema name (shared by versions)
	GoName        string // Go struct name of this version
	Type          string
	Version       int
	Topic         string
	Key           string
	Description   string
	Deprecated    bool
	DeprecatedMsg string
	Fields        []*Field
	Pos           Pos
	keyField      *Field
	// AwaitAck is the event's await_ack (nil when absent).
	AwaitAck *AwaitAck
}

// AwaitAck is an event's await_ack section: the outbox.AckPolicy its
// insert helper sets.
type AwaitAck struct {
	Deadline      time.Duration
	MaxResends    int
	ResendBackoff time.Duration // 0 = Deadline
}

// Field is one field of an event or named object.
type Field struct {
	Name          string
	GoName        string
	Description   string
	Optional      bool
	Nullable      bool
	Deprecated    bool
	DeprecatedMsg string
	T             *TypeRef
	Pos           Pos
}

// TypeRef is the type of a field, array item or map value, with its rules.
type TypeRef struct {
	Kind       string     // a builtin kind, "object" or "enum"
	Named      *NamedType // named object or named enum
	Enum       []string   // inline enum values
	EnumGoName string     // Go name of an inline enum type
	Elem       *TypeRef   // array items, map values
	Currency   string     // money: required currency, "" = any ISO 4217 code
	Min, Max   string     // exact decimal text, "" = none
	Pattern    string
	MaxLength  int // 0 = none
	MinItems   int
	HasMinItem bool
	GoType     string
}

// EnumValues returns the enum's values, inline or named.
func (t *TypeRef) EnumValues() []string {
	if t.Named != nil {
		return t.Named.Enum
	}
	return t.Enum
}

var builtinKinds = []string{"string", "int32", "int64", "bool", "decimal", "money", "timestamp", "date", "uuid", "bytes", "enum", "array", "map"}

// ---------------------------------------------------------------------------
// Parsing.

type parser struct {
	file  string
	nodes map[string]*yaml.Node // JSON pointer -> value node
	keys  map[string]*yaml.Node // JSON pointer -> key node (mapping entries)
	diags []Diag
	decls []decl // identifiers the generated output will declare, see names.go
}

func (p *parser) errAt(ptr string, format string, args ...any) {
	n := p.nodes[ptr]
	pos := Pos{1, 1}
	if n != nil {
		pos = Pos{n.Line, n.Column}
	}
	p.diags = append(p.diags, Diag{File: p.file, Pos: pos, Path: displayPath(ptr), Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) errAtKey(ptr string, format string, args ...any) {
	n := p.keys[ptr]
	if n == nil {
		p.errAt(ptr, format, args...)
		return
	}
	p.diags = append(p.diags, Diag{File: p.file, Pos: Pos{n.Line, n.Column}, Path: displayPath(ptr), Msg: fmt.Sprintf(format, args...)})
}

// displayPath turns /events/0/fields/amount into events[0].fields.amount.
func displayPath(ptr string) string {
	if ptr == "" {
		return ""
	}
	var b strings.Builder
	for _, tok := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		if _, err := strconv.Atoi(tok); err == nil {
			b.WriteString("[" + tok + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(tok)
	}
	return b.String()
}

func ptrJoin(ptr, tok string) string {
	return ptr + "/" + strings.ReplaceAll(strings.ReplaceAll(tok, "~", "~0"), "/", "~1")
}

// toValue converts a YAML node tree to JSON-like values for the JSON Schema
// validator, recording each node's position by JSON pointer. Anchors, aliases,
// merge keys, non-string keys and duplicate keys are rejected here: they have
// no place in a schema file and would make positions ambiguous.
func (p *parser) toValue(n *yaml.Node, ptr string) any {
	p.nodes[ptr] = n
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil
		}
		return p.toValue(n.Content[0], ptr)
	case yaml.AliasNode:
		p.errAt(ptr, "YAML aliases are not supported")
		return nil
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
				p.diags = append(p.diags, Diag{File: p.file, Pos: Pos{k.Line, k.Column}, Path: displayPath(ptr), Msg: "keys must be plain strings (no merge keys or complex keys)"})
				continue
			}
			cp := ptrJoin(ptr, k.Value)
			if _, dup := m[k.Value]; dup {
				p.diags = append(p.diags, Diag{File: p.file, Pos: Pos{k.Line, k.Column}, Path: displayPath(cp), Msg: fmt.Sprintf("duplicate key %q", k.Value)})
				continue
			}
			p.keys[cp] = k
			m[k.Value] = p.toValue(v, cp)
		}
		return m
	case yaml.SequenceNode:
		s := make([]any, len(n.Content))
		for i, c := range n.Content {
			s[i] = p.toValue(c, ptrJoin(ptr, strconv.Itoa(i)))
		}
		return s
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return nil
		case "!!bool":
			var b bool
			if err := n.Decode(&b); err != nil {
				p.errAt(ptr, "%v", err)
			}
			return b
		case "!!int", "!!float":
			// Keep the literal text so decimals like 0.10 stay exact.
			if _, ok := new(big.Rat).SetString(n.Value); !ok {
				p.errAt(ptr, "number %q is not a plain decimal (no hex, octal, inf or nan)", n.Value)
				return n.Value
			}
			return json.Number(n.Value)
		default:
			if msg := badText(n.Value); msg != "" {
				p.errAt(ptr, "%s", msg)
			}
			return n.Value
		}
	}
	return nil
}

// printable escapes the control and bidirectional-text characters of s so
// that a diagnostic never writes them to a terminal.
func printable(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return badText(string(r)) != "" && r != '\n' && r != '\t' || r == utf8.RuneError }) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if r != '\n' && r != '\t' && (badText(string(r)) != "" || r == utf8.RuneError) {
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// badText says why s cannot be carried into generated Go comments, string
// literals and JSON documents, or "". Tabs and newlines are the only control
// characters allowed; NUL, byte-order marks and bidirectional-text controls
// are refused (they break the Go source or hide what it says).
func badText(s string) string {
	if !utf8.ValidString(s) {
		return "text is not valid UTF-8"
	}
	for i, r := range s {
		switch {
		case r == 0:
			return fmt.Sprintf("text contains a NUL character (byte %d)", i)
		case r == '\uFEFF':
			return fmt.Sprintf("text contains a byte-order mark U+FEFF (byte %d)", i)
		case r >= '\u202A' && r <= '\u202E', r >= '\u2066' && r <= '\u2069':
			return fmt.Sprintf("text contains the bidirectional-text control %U (byte %d)", r, i)
		case unicode.IsControl(r) && r != '\t' && r != '\n':
			return fmt.Sprintf("text contains the control character %U (byte %d)", r, i)
		}
	}
	return ""
}

var metaSchema = func() *jsonschema.Schema {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(metaSchemaJSON))
	if err != nil {
		panic(err)
	}
	c := jsonschema.NewCompiler()
	const url = "https://github.com/outboxkit/outboxkit/cmd/outboxgen/outbox.schema.json"
	if err := c.AddResource(url, doc); err != nil {
		panic(err)
	}
	return c.MustCompile(url)
}()

var printer = message.NewPrinter(language.English)

// schemaDiags turns the validator's error tree into positioned diagnostics,
// keeping only leaves (the root causes).
func (p *parser) schemaDiags(ve *jsonschema.ValidationError) {
	if len(ve.Causes) > 0 {
		for _, c := range ve.Causes {
			p.schemaDiags(c)
		}
		return
	}
	ptr := ""
	for _, tok := range ve.InstanceLocation {
		ptr = ptrJoin(ptr, tok)
	}
	switch k := ve.ErrorKind.(type) {
	case *kind.AdditionalProperties:
		for _, prop := range k.Properties {
			p.errAtKey(ptrJoin(ptr, prop), "unknown key %q%s", prop, suggest(prop, ve))
		}
	case *kind.Required:
		for _, m := range k.Missing {
			p.errAt(ptr, "missing required key %q", m)
		}
	case *kind.Pattern:
		if eventTypeRE.MatchString(ptr) {
			p.errAt(ptr, "event type %q must be lowercase words of letters, digits and _ joined by dots, e.g. care.invoice_resent (%s)", k.Got, k.Want)
			break
		}
		if strings.HasSuffix(ptr, "/type") {
			p.errAt(ptr, "unknown type %q: not a builtin (%s) nor a PascalCase name declared under types", k.Got, strings.Join(builtinKinds, ", "))
			break
		}
		p.errAt(ptr, "%q does not match %s", k.Got, k.Want)
	case *kind.Type:
		p.errAt(ptr, "got %s, want %s", k.Got, strings.Join(k.Want, " or "))
	default:
		p.errAt(ptr, "%s", ve.ErrorKind.LocalizedString(printer))
	}
}

// Names are checked here rather than with propertyNames in the meta-schema:
// santhosh-tekuri/jsonschema v6.0.3 can report a propertyNames failure at a
// wrong instance location (its location slice is appended to in place).
var (
	fieldNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	typeNameRE  = regexp.MustCompile(`^[A-Z][A-Za-z0-9]*$`)
)

// eventTypeRE matches the JSON pointer of an event's wire type.
var eventTypeRE = regexp.MustCompile(`^/events/[0-9]+/type$`)

var knownKeys = []string{"info", "types", "events", "name", "go_name", "type", "version", "topic", "key", "description", "deprecated", "fields", "enum", "optional", "nullable", "go_type", "items", "values", "currency", "min", "max", "pattern", "max_length", "min_items", "title", "await_ack", "deadline", "max_resends", "resend_backoff"}

func suggest(prop string, _ *jsonschema.ValidationError) string {
	if slices.Contains(knownKeys, prop) {
		return " (not allowed here)"
	}
	norm := strings.ReplaceAll(strings.ReplaceAll(strings.ToLower(prop), "-", ""), "_", "")
	best, bestD := "", 3
	for _, k := range knownKeys {
		d := editDistance(norm, strings.ReplaceAll(k, "_", ""))
		limit := 2 // a transposition or two typos
		if len(k) < 5 {
			limit = 1
		}
		if d <= limit && d < bestD {
			best, bestD = k, d
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return ""
}

// editDistance is the optimal-string-alignment distance between a and b:
// insertions, deletions, substitutions and adjacent transpositions.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

// Parse parses and validates a schema file. Errors are a *SchemaError.
func Parse(file string, src []byte) (*Spec, error) {
	p := &parser{file: file, nodes: map[string]*yaml.Node{}, keys: map[string]*yaml.Node{}}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(src))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &SchemaError{Diags: []Diag{{File: file, Pos: Pos{1, 1}, Msg: "the file is empty: a schema needs at least an events list"}}}
		}
		return nil, &SchemaError{Diags: []Diag{yamlDiag(file, src, err)}}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &SchemaError{Diags: []Diag{{File: file, Pos: Pos{extra.Line, extra.Column}, Msg: "only one YAML document is allowed"}}}
	}
	v := p.toValue(&doc, "")
	if len(p.diags) == 0 {
		if err := metaSchema.Validate(v); err != nil {
			var ve *jsonschema.ValidationError
			if !errors.As(err, &ve) {
				return nil, err
			}
			p.schemaDiags(ve)
		}
	}
	var spec *Spec
	if len(p.diags) == 0 {
		spec = p.build(v.(map[string]any))
	}
	if len(p.diags) > 0 {
		sort.SliceStable(p.diags, func(i, j int) bool {
			a, b := p.diags[i].Pos, p.diags[j].Pos
			return a.Line < b.Line || a.Line == b.Line && a.Col < b.Col
		})
		p.diags = slices.CompactFunc(p.diags, func(a, b Diag) bool { return a == b })
		return nil, &SchemaError{Diags: p.diags}
	}
	return spec, nil
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlDiag positions a YAML syntax error. yaml.v3 reports no column, and
// for parser errors the line where the enclosing construct starts: the
// position is found instead as the shortest prefix of the file that fails
// with the same message (its last line, then its last column).
func yamlDiag(file string, src []byte, err error) Diag {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	failsSame := func(prefix []byte) bool {
		var n yaml.Node
		e := yaml.Unmarshal(prefix, &n)
		if e == nil {
			return false
		}
		em := strings.TrimPrefix(e.Error(), "yaml: ")
		if m := yamlLineRE.FindStringSubmatch(e.Error()); m != nil {
			em = m[2]
		}
		return em == msg
	}
	lines := bytes.SplitAfter(src, []byte("\n"))
	// Smallest number of lines whose prefix fails the same way (binary
	// search: a prefix that fails keeps failing as lines are added, in
	// practice).
	lo, hi := 1, len(lines)
	if !failsSame(src) {
		return Diag{File: file, Pos: Pos{max(line, 1), 0}, Msg: "invalid YAML: " + msg}
	}
	for lo < hi {
		mid := (lo + hi) / 2
		if failsSame(bytes.Join(lines[:mid], nil)) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	head := bytes.Join(lines[:lo-1], nil)
	last := []rune(string(lines[lo-1]))
	col := 0
	for c := 1; c <= len(last); c++ {
		if failsSame(append(slices.Clip(head), string(last[:c])...)) {
			col = c
			break
		}
	}
	if col == 0 || col > len(strings.TrimRight(string(last), "\r\n")) {
		col = 0 // the problem is the end of the line (or of the file)
	}
	return Diag{File: file, Pos: Pos{lo, col}, Msg: "invalid YAML: " + msg}
}

// orderedKeys returns a mapping node's keys in document order.
func (p *parser) orderedKeys(ptr string) []string {
	n := p.nodes[ptr]
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	var ks []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		ks = append(ks, n.Content[i].Value)
	}
	return ks
}

func (p *parser) pos(ptr string) Pos {
	if n := p.nodes[ptr]; n != nil {
		return Pos{n.Line, n.Column}
	}
	return Pos{1, 1}
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

func deprecation(v any) (bool, string) {
	switch d := v.(type) {
	case bool:
		return d, ""
	case string:
		return true, d
	}
	return false, ""
}

func (p *parser) build(root map[string]any) *Spec {
	s := &Spec{File: p.file, types: map[string]*NamedType{}}
	if info, ok := root["info"].(map[string]any); ok {
		s.Info = Info{Title: str(info, "title"), Version: str(info, "version"), Description: str(info, "description")}
	}
	// Declare named types first so fields can reference them in any order.
	types, _ := root["types"].(map[string]any)
	for _, name := range p.orderedKeys("/types") {
		tm := types[name].(map[string]any)
		ptr := ptrJoin("/types", name)
		nt := &NamedType{Name: name, Description: str(tm, "description"), Pos: p.pos(ptr)}
		if !typeNameRE.MatchString(name) {
			p.errAtKey(ptr, "invalid type name %q (type names are PascalCase: %s)", name, typeNameRE)
		}
		_, hasFields := tm["fields"]
		_, hasEnum := tm["enum"]
		switch {
		case hasFields && hasEnum:
			p.errAt(ptr, "a type has either fields (object) or enum, not both")
		case !hasFields && !hasEnum:
			p.errAt(ptr, "a type needs fields (object) or enum")
		case hasEnum:
			nt.Enum = p.enumValues(ptrJoin(ptr, "enum"), tm["enum"].([]any), name)
		}
		p.declare(scopePkg, name, ptr, true, "type "+name, "rename the type")
		p.declare(scopeSchemas, name, ptr, true, "schema of type "+name, "rename the type")
		if hasEnum && !hasFields {
			p.declare(scopePkg, name+"Unknown", ptr, true, "fallback constant of enum "+name, "rename the type")
		}
		s.Types = append(s.Types, nt)
		s.types[name] = nt
	}
	for _, nt := range s.Types {
		if nt.IsEnum() {
			continue
		}
		ptr := ptrJoin("/types", nt.Name)
		tm := types[nt.Name].(map[string]any)
		if fm, ok := tm["fields"].(map[string]any); ok {
			nt.Fields = p.fields(s, ptrJoin(ptr, "fields"), fm, nt.Name)
		}
	}
	p.checkCycles(s)

	seenTV := map[string]bool{}
	nameOfType := map[string]string{}
	typeOfName := map[string]string{}
	familySeen := map[string]bool{}
	topicSeen := map[string]bool{}
	for i, ev := range root["events"].([]any) {
		em := ev.(map[string]any)
		ptr := ptrJoin("/events", strconv.Itoa(i))
		e := &Event{
			Name: str(em, "name"), Type: str(em, "type"), Topic: str(em, "topic"), Key: str(em, "key"),
			Description: str(em, "description"), Pos: p.pos(ptr),
		}
		e.Deprecated, e.DeprecatedMsg = deprecation(em["deprecated"])
		if strings.ContainsFunc(e.Topic, unicode.IsControl) {
			p.errAt(ptrJoin(ptr, "topic"), "topic %q contains a control character (tab or newline)", e.Topic)
		}
		ver, _ := p.count(ptrJoin(ptr, "version"), em["version"], 1)
		e.Version = ver
		e.GoName = str(em, "go_name")
		if e.GoName == "" {
			e.GoName = e.Name
			if ver > 1 {
				e.GoName = fmt.Sprintf("%sV%d", e.Name, ver)
			}
		}
		tv := fmt.Sprintf("%s@%d", e.Type, e.Version)
		if seenTV[tv] {
			p.errAt(ptrJoin(ptr, "version"), "event type %q version %d is defined twice", e.Type, e.Version)
		}
		seenTV[tv] = true
		if prev, ok := nameOfType[e.Type]; ok && prev != e.Name {
			p.errAt(ptrJoin(ptr, "name"), "event type %q is named %q elsewhere; all versions of a type share one name", e.Type, prev)
		} else if prev, ok := typeOfName[e.Name]; ok && prev != e.Type {
			p.errAt(ptrJoin(ptr, "name"), "event name %q is already used by event type %q; each event type needs its own name (it names the decoder's On%s method)", e.Name, prev, e.Name)
		}
		nameOfType[e.Type] = e.Name
		typeOfName[e.Name] = e.Type
		namePtr := ptrJoin(ptr, "name")
		if _, ok := em["go_name"]; ok {
			namePtr = ptrJoin(ptr, "go_name")
		}
		what := fmt.Sprintf("event %s v%d", e.Type, e.Version)
		p.declare(scopePkg, e.GoName, namePtr, false, "struct of "+what, "set go_name on one of the events")
		for _, sfx := range []string{"Type", "Version", "Topic"} {
			p.declare(scopePkg, e.GoName+sfx, namePtr, false, "constant of "+what, "set go_name on one of the events")
		}
		p.declare(scopePkg, "Insert"+e.GoName, namePtr, false, "insert helper of "+what, "set go_name on one of the events")
		p.declare(scopeSchemas, e.GoName+"Payload", namePtr, false, "payload schema of "+what, "rename the type or set go_name on the event")
		if !familySeen[e.Type] {
			familySeen[e.Type] = true
			np := ptrJoin(ptr, "name")
			p.declare(scopeDecoder, handlerField(e.Name), np, false, "handler field of event "+e.Type, "rename the event")
			p.declare(scopeDecoder, "On"+e.Name, np, false, "handler setter of event "+e.Type, "rename the event")
		}
		if !topicSeen[e.Topic] {
			topicSeen[e.Topic] = true
			p.declare(scopeChannels, channelID(e.Topic), ptrJoin(ptr, "topic"), false, fmt.Sprintf("channel of topic %q", e.Topic), "rename one of the topics")
		}
		if am, ok := em["await_ack"].(map[string]any); ok {
			e.AwaitAck = p.awaitAck(ptrJoin(ptr, "await_ack"), am)
		}
		e.Fields = p.fields(s, ptrJoin(ptr, "fields"), em["fields"].(map[string]any), e.GoName)
		if e.Key != "" {
			for _, f := range e.Fields {
				if f.Name == e.Key {
					e.keyField = f
				}
			}
			switch {
			case e.keyField == nil:
				p.errAt(ptrJoin(ptr, "key"), "key %q is not a field of this event", e.Key)
			case e.keyField.Optional || e.keyField.Nullable:
				p.errAt(ptrJoin(ptr, "key"), "key field %q must be required and not nullable", e.Key)
			case e.keyField.T.GoType != "" || !slices.Contains([]string{"string", "uuid", "int32", "int64", "date", "enum"}, e.keyField.T.Kind):
				p.errAt(ptrJoin(ptr, "key"), "key field %q must be a string, uuid, int32, int64, date or enum without go_type, not %s", e.Key, e.keyField.T.Kind)
			}
		}
		s.Events = append(s.Events, e)
	}
	p.checkNames()
	// The order of types and events in the file carries no meaning: sort
	// them so that reordering the file never changes the output. Field
	// order and enum value order are kept: they are the struct's field
	// order, the JSON payload's key order and the constants' order.
	slices.SortStableFunc(s.Types, func(a, b *NamedType) int { return strings.Compare(a.Name, b.Name) })
	slices.SortStableFunc(s.Events, func(a, b *Event) int {
		return cmp.Or(strings.Compare(a.Type, b.Type), cmp.Compare(a.Version, b.Version))
	})
	return s
}

func (p *parser) enumValues(ptr string, vs []any, goName string) []string {
	out := make([]string, 0, len(vs))
	seenGo := map[string]string{}
	for i, v := range vs {
		sv := v.(string)
		g := goIdent(sv)
		switch {
		case strings.TrimSpace(sv) != sv:
			p.errAt(ptrJoin(ptr, strconv.Itoa(i)), "enum value %q has leading or trailing spaces", sv)
		case strings.ContainsFunc(sv, unicode.IsControl):
			p.errAt(ptrJoin(ptr, strconv.Itoa(i)), "enum value %q contains a control character", sv)
		case !strings.ContainsFunc(sv, func(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }):
			p.errAt(ptrJoin(ptr, strconv.Itoa(i)), "enum value %q has no letter or digit to derive a Go constant name from", sv)
		}
		if strings.EqualFold(g, "Unknown") {
			p.errAt(ptrJoin(ptr, strconv.Itoa(i)), "enum value %q is reserved: Unknown is the generated fallback for values a consumer does not know", sv)
		}
		if prev, ok := seenGo[g]; ok {
			p.errAt(ptrJoin(ptr, strconv.Itoa(i)), "enum value %q maps to the same Go name %s as value %q (Go names ignore case, spaces and punctuation); rename one of them", sv, g, prev)
		} else {
			seenGo[g] = sv
			p.declare(scopePkg, goName+g, ptrJoin(ptr, strconv.Itoa(i)), false, fmt.Sprintf("constant of enum %s value %q", goName, sv), "rename the value or the enum")
		}
		out = append(out, sv)
	}
	return out
}

func (p *parser) fields(s *Spec, ptr string, fm map[string]any, owner string) []*Field {
	var out []*Field
	for _, name := range p.orderedKeys(ptr) {
		fptr := ptrJoin(ptr, name)
		m := fm[name].(map[string]any)
		f := &Field{Name: name, GoName: str(m, "go_name"), Description: str(m, "description"), Pos: p.pos(fptr)}
		if !fieldNameRE.MatchString(name) {
			p.errAtKey(fptr, "invalid field name %q (field names are snake_case: %s)", name, fieldNameRE)
		}
		if f.GoName == "" {
			f.GoName = goIdent(name)
		}
		f.Optional, _ = m["optional"].(bool)
		f.Nullable, _ = m["nullable"].(bool)
		f.Deprecated, f.DeprecatedMsg = deprecation(m["deprecated"])
		goNamePtr, atKey := fptr, true
		if _, ok := m["go_name"]; ok {
			goNamePtr, atKey = ptrJoin(fptr, "go_name"), false
		}
		if slices.Contains(structMethods, f.GoName) {
			p.errAtKey(fptr, "Go field name %s is reserved by the generated methods (set go_name)", f.GoName)
		} else {
			p.declare("struct "+owner, f.GoName, goNamePtr, atKey, fmt.Sprintf("field %q of %s", name, owner), "set go_name")
		}
		f.T = p.typeRef(s, fptr, m, owner+f.GoName)
		if f.T.Elem != nil && f.T.Elem.Elem != nil && hasTimestamp(f.T.Elem.Elem) {
			p.errAt(ptrJoin(fptr, "type"), "timestamps nested two collections deep are not supported (wrap them in a named object)")
		}
		out = append(out, f)
	}
	return out
}

func (p *parser) typeRef(s *Spec, ptr string, m map[string]any, enumGoName string) *TypeRef {
	t := &TypeRef{Kind: str(m, "type"), GoType: str(m, "go_type"), Pattern: str(m, "pattern"), Currency: str(m, "currency")}
	tptr := ptrJoin(ptr, "type")
	if !slices.Contains(builtinKinds, t.Kind) {
		nt, ok := s.types[t.Kind]
		if !ok {
			p.errAt(tptr, "unknown type %q: not a builtin (%s) nor declared under types", t.Kind, strings.Join(builtinKinds, ", "))
			return t
		}
		t.Named = nt
		t.Kind = "object"
		if nt.IsEnum() {
			t.Kind = "enum"
		}
	}
	// Keys that only make sense for some kinds: reject the rest rather than
	// silently ignoring them.
	allowed := map[string][]string{
		"enum":       {"enum"},
		"items":      {"array"},
		"values":     {"map"},
		"currency":   {"money"},
		"min":        {"int32", "int64", "decimal", "money"},
		"max":        {"int32", "int64", "decimal", "money"},
		"pattern":    {"string"},
		"max_length": {"string"},
		"min_items":  {"array", "map"},
	}
	for _, k := range []string{"enum", "items", "values", "currency", "min", "max", "pattern", "max_length", "min_items"} {
		if _, has := m[k]; has && !(slices.Contains(allowed[k], t.Kind) && !(k == "enum" && t.Named != nil)) {
			p.errAtKey(ptrJoin(ptr, k), "%q is not allowed on a field of type %s (allowed on: %s)", k, str(m, "type"), strings.Join(allowed[k], ", "))
		}
	}
	if t.GoType != "" {
		for _, k := range []string{"min", "max", "pattern", "max_length", "min_items", "enum", "currency"} {
			if _, has := m[k]; has {
				p.errAtKey(ptrJoin(ptr, k), "%q cannot be combined with go_type: the generator cannot validate a type it does not know", k)
			}
		}
	}
	switch t.Kind {
	case "enum":
		if t.Named == nil {
			vs, ok := m["enum"].([]any)
			if !ok {
				p.errAt(tptr, "type enum needs an enum list of values (or declare a named enum under types)")
			} else {
				t.EnumGoName = enumGoName
				hint := "set go_name on the field or declare a named enum under types"
				p.declare(scopePkg, enumGoName, tptr, false, "inline enum type of "+displayPath(ptr), hint)
				p.declare(scopePkg, enumGoName+"Unknown", tptr, false, "fallback constant of inline enum "+enumGoName, hint)
				t.Enum = p.enumValues(ptrJoin(ptr, "enum"), vs, enumGoName)
			}
		}
	case "array", "map":
		k := map[string]string{"array": "items", "map": "values"}[t.Kind]
		em, ok := m[k].(map[string]any)
		if !ok {
			p.errAt(tptr, "type %s needs %s: the element type", t.Kind, k)
		} else {
			suffix := "Item"
			if t.Kind == "map" {
				suffix = "Value"
			}
			t.Elem = p.typeRef(s, ptrJoin(ptr, k), em, enumGoName+suffix)
		}
	}
	for _, k := range []string{"min", "max"} {
		v, has := m[k]
		if !has {
			continue
		}
		var text string
		switch n := v.(type) {
		case json.Number:
			text = string(n)
		case string:
			text = n
		}
		if !decimalRE.MatchString(text) {
			p.errAt(ptrJoin(ptr, k), "%s %q is not a decimal number", k, text)
			continue
		}
		if (t.Kind == "int32" || t.Kind == "int64") && strings.Contains(text, ".") {
			p.errAt(ptrJoin(ptr, k), "%s %q must be an integer for type %s", k, text, t.Kind)
			continue
		}
		if t.Kind == "int32" || t.Kind == "int64" {
			bits := 32
			if t.Kind == "int64" {
				bits = 64
			}
			if _, err := strconv.ParseInt(text, 10, bits); err != nil {
				p.errAt(ptrJoin(ptr, k), "%s %s overflows %s", k, text, t.Kind)
				continue
			}
		}
		if k == "min" {
			t.Min = text
		} else {
			t.Max = text
		}
	}
	if t.Min != "" && t.Max != "" {
		a, _ := new(big.Rat).SetString(t.Min)
		b, _ := new(big.Rat).SetString(t.Max)
		if a.Cmp(b) > 0 {
			p.errAt(ptrJoin(ptr, "min"), "min %s is greater than max %s", t.Min, t.Max)
		}
	}
	if _, has := m["pattern"]; has {
		if _, err := regexp.Compile(t.Pattern); err != nil {
			p.errAt(ptrJoin(ptr, "pattern"), "pattern is not a valid Go (RE2) regular expression: %v", err)
		} else if err := checkPattern(t.Pattern); err != nil {
			p.errAt(ptrJoin(ptr, "pattern"), "pattern is outside the subset of RE2 and ECMA-262 that Go and JSON Schema validators read alike: %v", err)
		}
	}
	if n, ok := m["max_length"]; ok {
		t.MaxLength, _ = p.count(ptrJoin(ptr, "max_length"), n, 1)
	}
	if n, ok := m["min_items"]; ok {
		t.MinItems, t.HasMinItem = p.count(ptrJoin(ptr, "min_items"), n, 0)
	}
	if t.GoType != "" {
		if msg := badGoType(t.GoType); msg != "" {
			p.errAt(ptrJoin(ptr, "go_type"), "go_type %q %s", t.GoType, msg)
		}
	}
	return t
}

// count reads a max_length or min_items rule: an integer written as such
// (10, not 10.0 or 1e1) between least and 2^31-1.
func (p *parser) count(ptr string, v any, least int) (int, bool) {
	text := fmt.Sprint(v)
	if !countRE.MatchString(text) {
		p.errAt(ptr, "%s must be an integer written without fraction or exponent, got %s", path.Base(ptr), text)
		return 0, false
	}
	n, err := strconv.ParseInt(text, 10, 32)
	if err != nil || int(n) < least {
		p.errAt(ptr, "%s %s is out of range [%d, %d]", path.Base(ptr), text, least, math.MaxInt32)
		return 0, false
	}
	return int(n), true
}

var countRE = regexp.MustCompile(`^(0|[1-9][0-9]*)$`)

// badGoType says why a go_type cannot name a Go type, or "".
func badGoType(s string) string {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "*"), "[]")
	pkg, name := "", s
	if i := strings.LastIndex(s, "."); i >= 0 {
		pkg, name = s[:i], s[i+1:]
	}
	switch {
	case token.IsKeyword(name) || name == "_":
		return "names a Go keyword, not a type"
	case pkg == "" && slices.Contains(predeclared, name) && !slices.Contains(predeclaredTypes, name):
		return "names a predeclared value or function, not a type"
	case pkg != "" && !token.IsExported(name):
		return "names an unexported identifier of another package"
	case pkg != "" && (strings.HasPrefix(pkg, "/") || strings.HasSuffix(pkg, "/") || strings.Contains(pkg, "//") ||
		slices.ContainsFunc(strings.Split(pkg, "/"), func(e string) bool {
			return e == "." || e == ".." || strings.HasPrefix(e, ".") || strings.HasSuffix(e, ".")
		})):
		return "has an invalid import path"
	}
	return ""
}

var decimalRE = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?$`)

// checkCycles rejects named objects that contain themselves without an
// indirection that can end (a nullable/optional field, an array or a map):
// such a Go struct would have infinite size.
func (p *parser) checkCycles(s *Spec) {
	state := map[*NamedType]int{}
	var visit func(nt *NamedType) bool
	visit = func(nt *NamedType) bool {
		switch state[nt] {
		case 1:
			return true
		case 2:
			return false
		}
		state[nt] = 1
		for _, f := range nt.Fields {
			if f.Optional || f.Nullable || f.T.Named == nil || f.T.Named.IsEnum() {
				continue
			}
			if visit(f.T.Named) {
				p.errAt(ptrJoin(ptrJoin(ptrJoin("/types", nt.Name), "fields"), f.Name), "type %s contains itself through required field %q; make it optional or nullable", nt.Name, f.Name)
				state[nt] = 2
				return false
			}
		}
		state[nt] = 2
		return false
	}
	for _, nt := range s.Types {
		visit(nt)
	}
}

// goIdent turns snake_case, kebab-case, dotted or spaced names into an
// exported Go identifier with common initialisms (invoice_id -> InvoiceID,
// "on hold" -> OnHold, "2fa" -> V2fa). Every rune that cannot appear in a Go
// identifier separates words. The result may be "V" alone when s has no
// letter or digit; callers reject such names.
func goIdent(s string) string {
	var b strings.Builder
	for _, part := range strings.FieldsFunc(s, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
		if w, ok := initialisms[strings.ToUpper(part)]; ok {
			b.WriteString(w)
			continue
		}
		r, n := utf8.DecodeRuneInString(part)
		b.WriteRune(unicode.ToUpper(r))
		b.WriteString(part[n:])
	}
	g := b.String()
	if r, _ := utf8.DecodeRuneInString(g); g == "" || !unicode.IsLetter(r) {
		g = "V" + g
	}
	return g
}

// initialisms maps an upper-cased word to its spelling in Go names, after
// the list of golint/staticcheck (ST1003) plus a few domain words.
var initialisms = func() map[string]string {
	m := map[string]string{"IDS": "IDs", "URLS": "URLs", "UUIDS": "UUIDs", "APIS": "APIs"}
	for _, w := range strings.Fields("ACL API ASCII CPU CSS DNS EOF GUID HTML HTTP HTTPS ID IP ISO JSON LHS QPS RAM RHS RPC SLA SMTP SQL SSH TCP TLS TTL UDP UI UID UUID URI URL UTF8 VAT VM XML XMPP XSRF XSS") {
		m[w] = w
	}
	return m
}()

// maxAckDuration is outbox.MaxAckDeadline (90 days).
const maxAckDuration = 90 * 24 * time.Hour

// awaitAck reads an await_ack section (the meta-schema checked its shape).
func (p *parser) awaitAck(ptr string, m map[string]any) *AwaitAck {
	a := &AwaitAck{}
	dur := func(name string) time.Duration {
		v, ok := m[name]
		if !ok {
			return 0
		}
		text := fmt.Sprint(v)
		d, err := time.ParseDuration(text)
		switch {
		case err != nil:
			p.errAt(ptrJoin(ptr, name), "%s %q is not a Go duration such as 10m or 1h30m", name, text)
		case d < time.Millisecond || d > maxAckDuration:
			p.errAt(ptrJoin(ptr, name), "%s %s is out of range [1ms, %s]", name, text, maxAckDuration)
		case d%time.Millisecond != 0:
			p.errAt(ptrJoin(ptr, name), "%s %s is finer than a millisecond", name, text)
		}
		return d
	}
	a.Deadline = dur("deadline")
	a.ResendBackoff = dur("resend_backoff")
	if v, ok := m["max_resends"]; ok {
		a.MaxResends, _ = p.count(ptrJoin(ptr, "max_resends"), v, 0)
	}
	return a
}
