package main

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// obj is a JSON object that keeps its keys in insertion order, so the
// emitted documents read naturally and are byte-identical across runs.
type obj []kv

type kv struct {
	k string
	v any
}

func (o obj) set(k string, v any) obj { return append(o, kv{k, v}) }

func (o obj) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(e.k)
		b.Write(k)
		b.WriteByte(':')
		v, err := marshalNoEscape(e.v)
		if err != nil {
			return nil, err
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func marshalNoEscape(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

func renderJSON(v any) ([]byte, error) {
	raw, err := marshalNoEscape(v)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, raw, "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// schemaWriter renders JSON Schema fragments; refPrefix is where named types
// live ("#/$defs/" in a standalone schema, "#/components/schemas/" in
// AsyncAPI).
type schemaWriter struct {
	refPrefix string
	used      map[string]bool
	order     []*NamedType
}

func (w *schemaWriter) ref(nt *NamedType) obj {
	if !w.used[nt.Name] {
		w.used[nt.Name] = true
		w.order = append(w.order, nt)
	}
	return obj{}.set("$ref", w.refPrefix+nt.Name)
}

func (w *schemaWriter) namedSchema(nt *NamedType) obj {
	o := obj{}
	if nt.Description != "" {
		o = o.set("description", nt.Description)
	}
	if nt.IsEnum() {
		return o.set("type", "string").set("enum", nt.Enum)
	}
	return w.objectSchema(o, nt.Fields)
}

func (w *schemaWriter) objectSchema(o obj, fields []*Field) obj {
	props := obj{}
	var required []string
	for _, f := range fields {
		props = props.set(f.Name, w.fieldSchema(f))
		if !f.Optional {
			required = append(required, f.Name)
		}
	}
	o = o.set("type", "object").set("properties", props)
	if len(required) > 0 {
		o = o.set("required", required)
	}
	return o
}

func (w *schemaWriter) fieldSchema(f *Field) obj {
	s := w.typeSchema(f.T)
	if f.Nullable {
		s = obj{}.set("anyOf", []any{s, obj{}.set("type", "null")})
	}
	out := obj{}
	if f.Description != "" {
		out = out.set("description", f.Description)
	}
	if f.Deprecated {
		out = out.set("deprecated", true)
	}
	return append(out, s...)
}

func num(s string) json.Number { return json.Number(s) }

func (w *schemaWriter) typeSchema(t *TypeRef) obj {
	o := obj{}
	switch t.Kind {
	case "string":
		o = o.set("type", "string")
		if t.MaxLength > 0 {
			o = o.set("maxLength", t.MaxLength)
		}
		if t.Pattern != "" {
			o = o.set("pattern", t.Pattern)
		}
	case "uuid":
		o = o.set("type", "string").set("format", "uuid").set("pattern", "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
	case "int32", "int64":
		o = o.set("type", "integer").set("format", t.Kind)
		lo, hi := "-2147483648", "2147483647"
		if t.Kind == "int64" {
			lo, hi = "-9223372036854775808", "9223372036854775807"
		}
		o = o.set("minimum", num(cmpOr(t.Min, lo))).set("maximum", num(cmpOr(t.Max, hi)))
	case "bool":
		o = o.set("type", "boolean")
	case "decimal":
		o = w.decimal(o, t)
	case "money":
		cur := obj{}.set("type", "string").set("pattern", "^[A-Z]{3}$")
		if t.Currency != "" {
			cur = obj{}.set("const", t.Currency)
		}
		o = o.set("type", "object").
			set("properties", obj{}.set("amount", w.decimal(obj{}, t)).set("currency", cur)).
			set("required", []string{"amount", "currency"}).
			set("additionalProperties", false)
	case "timestamp":
		o = o.set("type", "string").set("format", "date-time")
	case "date":
		o = o.set("type", "string").set("format", "date")
	case "bytes":
		o = o.set("type", "string").set("contentEncoding", "base64")
	case "enum":
		if t.Named != nil {
			return w.ref(t.Named)
		}
		o = o.set("type", "string").set("enum", t.Enum)
	case "object":
		return w.ref(t.Named)
	case "array":
		o = o.set("type", "array").set("items", w.typeSchema(t.Elem))
		if t.HasMinItem {
			o = o.set("minItems", t.MinItems)
		}
	case "map":
		o = o.set("type", "object").set("additionalProperties", w.typeSchema(t.Elem))
		if t.HasMinItem {
			o = o.set("minProperties", t.MinItems)
		}
	}
	return o
}

// decimal bounds cannot be JSON Schema keywords on a string; they are kept
// as x- annotations so tools and readers still see them.
func (w *schemaWriter) decimal(o obj, t *TypeRef) obj {
	o = o.set("type", "string").set("pattern", decimalRE.String())
	if t.Min != "" {
		o = o.set("x-minimum", t.Min)
	}
	if t.Max != "" {
		o = o.set("x-maximum", t.Max)
	}
	return o
}

func (w *schemaWriter) eventSchema(e *Event) obj {
	o := obj{}.set("title", e.GoName)
	if e.Description != "" {
		o = o.set("description", e.Description)
	}
	if e.Deprecated {
		o = o.set("deprecated", true)
	}
	o = o.set("x-outbox-type", e.Type).set("x-outbox-version", e.Version).set("x-outbox-topic", e.Topic)
	if e.Key != "" {
		o = o.set("x-outbox-key", e.Key)
	}
	return w.objectSchema(o, e.Fields)
}

// EventJSONSchema returns the standalone JSON Schema (draft 2020-12) of one
// event version's payload.
func EventJSONSchema(e *Event) ([]byte, error) {
	w := &schemaWriter{refPrefix: "#/$defs/", used: map[string]bool{}}
	body := w.eventSchema(e)
	defs := obj{}
	for i := 0; i < len(w.order); i++ { // order grows while rendering
		nt := w.order[i]
		defs = defs.set(nt.Name, w.namedSchema(nt))
	}
	o := obj{}.set("$schema", "https://json-schema.org/draft/2020-12/schema")
	o = append(o, body...)
	if len(defs) > 0 {
		o = o.set("$defs", defs)
	}
	return renderJSON(o)
}

// AsyncAPI returns an AsyncAPI 3.0 document describing every event as a
// message sent on its topic's channel.
func AsyncAPI(spec *Spec, pkg string) ([]byte, error) {
	w := &schemaWriter{refPrefix: "#/components/schemas/", used: map[string]bool{}}
	info := obj{}.set("title", cmpOr(spec.Info.Title, pkg+" events")).set("version", cmpOr(spec.Info.Version, "1"))
	if spec.Info.Description != "" {
		info = info.set("description", spec.Info.Description)
	}
	channels := obj{}
	chIndex := map[string]int{}
	operations := obj{}
	messages := obj{}
	payloads := obj{}
	for _, e := range spec.Events {
		chID := channelID(e.Topic)
		i, ok := chIndex[chID]
		if !ok {
			i = len(channels)
			chIndex[chID] = i
			channels = channels.set(chID, obj{}.set("address", e.Topic).set("messages", obj{}))
		}
		ch := channels[i].v.(obj)
		ch[1].v = ch[1].v.(obj).set(e.GoName, obj{}.set("$ref", "#/components/messages/"+e.GoName))
		channels[i].v = ch

		operations = operations.set("send"+e.GoName, obj{}.
			set("action", "send").
			set("channel", obj{}.set("$ref", "#/channels/"+chID)).
			set("messages", []any{obj{}.set("$ref", "#/channels/"+chID+"/messages/"+e.GoName)}))

		payloads = payloads.set(e.GoName+"Payload", w.eventSchema(e))
		msg := obj{}.set("name", e.Type).set("title", e.GoName)
		if e.Description != "" {
			msg = msg.set("summary", firstLine(e.Description)).set("description", e.Description)
		}
		if e.Deprecated {
			msg = msg.set("deprecated", true)
		}
		msg = msg.set("contentType", "application/json").
			set("headers", obj{}.set("type", "object").
				set("properties", obj{}.
					set(HeaderEventVersion, obj{}.set("type", "string").set("const", strconv.Itoa(e.Version))).
					set("outbox_event_type", obj{}.set("type", "string").set("const", e.Type)).
					set("outbox_event_id", obj{}.set("type", "string").set("format", "uuid"))).
				set("required", []string{HeaderEventVersion, "outbox_event_type", "outbox_event_id"})).
			set("payload", obj{}.set("$ref", "#/components/schemas/"+e.GoName+"Payload"))
		if e.Key != "" {
			msg = msg.set("x-outbox-key", e.Key)
		}
		messages = messages.set(e.GoName, msg)
	}
	schemas := obj{}
	for i := 0; i < len(w.order); i++ {
		nt := w.order[i]
		schemas = schemas.set(nt.Name, w.namedSchema(nt))
	}
	schemas = append(schemas, payloads...)
	doc := obj{}.set("asyncapi", "3.0.0").set("info", info).set("defaultContentType", "application/json").
		set("channels", channels).set("operations", operations).
		set("components", obj{}.set("messages", messages).set("schemas", schemas))
	return renderJSON(doc)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return l
}

// schemaFileName expands {type} and {version} in a -jsonschema pattern.
func schemaFileName(pattern string, e *Event) string {
	r := strings.NewReplacer("{type}", e.Type, "{version}", strconv.Itoa(e.Version), "{name}", e.GoName)
	return r.Replace(pattern)
}
