package main

import (
	"fmt"
	"go/token"
	"path"
	"slices"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The naming layer: every identifier the generator emits (package-level
// types, constants, functions and variables; struct fields and methods; the
// decoder's fields and methods; AsyncAPI component keys and channel ids) is
// declared here, in the scope it lives in, with the schema position that
// asks for it. checkNames then rejects, before anything is generated, every
// identifier that is a Go keyword or predeclared identifier where that would
// not compile, that the generator itself declares in that scope, or that two
// schema locations ask for: the diagnostic names both positions.

// Scopes of the generated output.
const (
	scopePkg      = "package"
	scopeDecoder  = "Decoder"
	scopeSchemas  = "AsyncAPI components.schemas"
	scopeChannels = "AsyncAPI channels"
)

// decl is one identifier of the generated output and the schema location
// that asks for it.
type decl struct {
	scope string
	ident string
	pos   Pos    // zero for identifiers the generator always declares
	ptr   string // schema location, for the diagnostic's path
	what  string // e.g. "struct of event care.invoice.issued v1"
	hint  string // how to resolve a collision
}

// generatedIdents are declared by every generated file (some only when
// used; they are reserved anyway so that adding a field never breaks a
// schema that used to work).
var generatedIdents = []string{"HeaderEventVersion", "Upcaster", "UnknownEventPolicy", "UnknownEventError", "UnknownEventSkip",
	"ErrUnknownEvent", "ErrMalformedEvent", "DecoderConfig", "Decoder", "NewDecoder", "FieldError", "Decimal", "Money", "Date", "DateOf"}

// decoderIdents are the fields and methods of the generated Decoder that do
// not come from the schema.
var decoderIdents = []string{"cfg", "unknown", "Handle"}

// structMethods are the methods generated on every object and event struct;
// a field may not share their names.
var structMethods = []string{"Validate", "validate", "OutboxEvent", "MarshalJSON", "UnmarshalJSON"}

// predeclared lists Go's predeclared identifiers (universe scope).
var predeclared = strings.Fields(`any bool byte comparable complex64 complex128 error float32 float64 int int8 int16 int32 int64
	rune string uint uint8 uint16 uint32 uint64 uintptr true false iota nil append cap clear close complex copy delete imag len
	make max min new panic print println real recover`)

// predeclaredTypes are the predeclared identifiers that name a type.
var predeclaredTypes = strings.Fields(`any bool byte comparable complex64 complex128 error float32 float64 int int8 int16 int32 int64
	rune string uint uint8 uint16 uint32 uint64 uintptr`)

// declare records that the output declares ident in scope because of the
// schema node at ptr (its key when atKey).
func (p *parser) declare(scope, ident, ptr string, atKey bool, what, hint string) {
	pos := p.pos(ptr)
	if n := p.keys[ptr]; atKey && n != nil {
		pos = Pos{n.Line, n.Column}
	}
	p.decls = append(p.decls, decl{scope: scope, ident: ident, pos: pos, ptr: ptr, what: what, hint: hint})
}

// checkNames reports every declared identifier that cannot be: a keyword,
// a predeclared name, or one declared twice in its scope (at the later
// declaration in file order, naming the earlier one).
func (p *parser) checkNames() {
	decls := slices.Clone(p.decls)
	for _, id := range generatedIdents {
		decls = append(decls, decl{scope: scopePkg, ident: id, what: "an identifier the generated code always declares"})
	}
	for _, id := range decoderIdents {
		decls = append(decls, decl{scope: scopeDecoder, ident: id, what: "a field or method the generated Decoder always has"})
	}
	sort.SliceStable(decls, func(i, j int) bool {
		a, b := decls[i].pos, decls[j].pos
		return a.Line < b.Line || a.Line == b.Line && a.Col < b.Col
	})
	seen := map[[2]string]decl{}
	reported := map[[2]Pos]bool{} // one diagnostic per pair of schema locations
	for _, d := range decls {
		goScope := d.scope != scopeSchemas && d.scope != scopeChannels
		if goScope && (token.IsKeyword(d.ident) || (d.scope == scopePkg || d.scope == scopeDecoder) && slices.Contains(predeclared, d.ident)) {
			p.diags = append(p.diags, Diag{File: p.file, Pos: d.pos, Path: displayPath(d.ptr),
				Msg: fmt.Sprintf("Go name %s (%s) is a Go keyword or predeclared identifier; %s", d.ident, d.what, d.hint)})
			continue
		}
		key := [2]string{d.scope, d.ident}
		prev, dup := seen[key]
		if !dup {
			seen[key] = d
			continue
		}
		if reported[[2]Pos{d.pos, prev.pos}] {
			continue
		}
		reported[[2]Pos{d.pos, prev.pos}] = true
		where := prev.what
		if prev.pos != (Pos{}) {
			where = fmt.Sprintf("%s at %s:%d:%d", prev.what, p.file, prev.pos.Line, prev.pos.Col)
		}
		name := "Go name"
		switch d.scope {
		case scopeSchemas:
			name = "AsyncAPI schema key"
		case scopeChannels:
			name = "AsyncAPI channel id"
		}
		p.diags = append(p.diags, Diag{File: p.file, Pos: d.pos, Path: displayPath(d.ptr),
			Msg: fmt.Sprintf("%s %s (%s) collides with %s; %s", name, d.ident, d.what, where, d.hint)})
	}
}

// channelID turns a topic into an AsyncAPI channel id (letters, digits, '.',
// '-' and '_'), injectively: '_' is written "__" and any other byte outside
// [A-Za-z0-9.-] "_XX" in hex, so two topics never share a channel.
func channelID(topic string) string {
	var b strings.Builder
	for i := 0; i < len(topic); i++ {
		c := topic[i]
		switch {
		case c == '_':
			b.WriteString("__")
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "_%02X", c)
		}
	}
	return b.String()
}

// handlerField is the Decoder field holding the handler of an event family.
func handlerField(name string) string { return "on" + name }

// checkPackageName reports why pkg cannot be the generated file's package
// clause, or nil.
func checkPackageName(pkg string) error {
	switch {
	case pkg == "":
		return fmt.Errorf("empty package name")
	case !token.IsIdentifier(pkg):
		return fmt.Errorf("package name %q is not a Go identifier (letters, digits and _, not starting with a digit; no keyword)", pkg)
	case pkg == "_" || pkg == "main":
		return fmt.Errorf("package name %q cannot hold importable generated code", pkg)
	case strings.HasSuffix(pkg, "_test"):
		return fmt.Errorf("package name %q is reserved for external tests", pkg)
	}
	return nil
}

// knownOS and knownArch are the GOOS and GOARCH values a file name suffix
// would constrain the build to.
var (
	knownOS   = strings.Fields("aix android darwin dragonfly freebsd hurd illumos ios js linux nacl netbsd openbsd plan9 solaris wasip1 windows zos")
	knownArch = strings.Fields("386 amd64 amd64p32 arm armbe arm64 arm64be loong64 mips mipsle mips64 mips64le mips64p32 mips64p32le ppc ppc64 ppc64le riscv riscv64 s390 s390x sparc sparc64 wasm")
)

// checkGoFileName reports why name cannot be the generated Go file (one
// that go build compiles unconditionally), or nil.
func checkGoFileName(name string) error {
	base := strings.TrimSuffix(name, ".go")
	switch {
	case !strings.HasSuffix(name, ".go") || base == "":
		return fmt.Errorf("-out %q: the generated file's name must end in .go", name)
	case strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_"):
		return fmt.Errorf("-out %q: go build ignores files whose name starts with . or _", name)
	case strings.HasSuffix(base, "_test"):
		return fmt.Errorf("-out %q: a _test.go file is compiled only by go test", name)
	}
	parts := strings.Split(base, "_")
	last := parts[len(parts)-1]
	if len(parts) > 1 && (slices.Contains(knownOS, last) || slices.Contains(knownArch, last)) {
		return fmt.Errorf("-out %q: the suffix _%s restricts the file to one GOOS or GOARCH", name, last)
	}
	return nil
}

// checkOutputName reports why a JSON Schema or AsyncAPI file name cannot be
// written under the output directory, or nil.
func checkOutputName(flagName, name string) error {
	switch {
	case strings.ContainsFunc(name, func(r rune) bool { return r == 0 || r == '\\' || unicode.IsControl(r) }) || !utf8.ValidString(name):
		return fmt.Errorf("%s %q: control characters and backslashes are not allowed in file names", flagName, name)
	case name == "" || name == ".":
		return fmt.Errorf("%s %q: not a file name", flagName, name)
	case path.IsAbs(name) || name != path.Clean(name) || name == ".." || strings.HasPrefix(name, "../"):
		return fmt.Errorf("%s %q: must be a clean relative path inside the output directory", flagName, name)
	case strings.HasSuffix(name, ".go"):
		return fmt.Errorf("%s %q: a .go file would be compiled into the package", flagName, name)
	}
	return nil
}
