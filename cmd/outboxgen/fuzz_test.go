package main

import (
	"errors"
	"go/ast"
	goparser "go/parser"
	"go/token"
	"os"
	"testing"
)

// FuzzParseSchema feeds arbitrary bytes to the schema parser. Parse must
// never panic; whatever it accepts must render, and the Go file must parse
// and declare no identifier twice (a schema the parser accepts must compile).
// Seeded with every schema under testdata and the example; go test runs the
// seeds, go test -fuzz=FuzzParseSchema explores.
func FuzzParseSchema(f *testing.F) {
	for _, path := range schemaInputs(f) {
		src, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	f.Add([]byte(okEvent))
	f.Add([]byte(lockBase))
	f.Fuzz(func(t *testing.T, src []byte) {
		spec, err := Parse("fuzz.yaml", src)
		if err != nil {
			var se *SchemaError
			if !errors.As(err, &se) || len(se.Diags) == 0 {
				t.Fatalf("Parse error %v (%T), want a non-empty *SchemaError", err, err)
			}
			return
		}
		files, err := Render(spec, "fuzz", "events_gen.go", "{type}.v{version}.schema.json", "asyncapi.json")
		if err != nil {
			var se *SchemaError
			if errors.As(err, &se) {
				return // a shape the generator reports as unsupported
			}
			t.Fatalf("Render of an accepted schema: %v\n%s", err, src)
		}
		checkDecls(t, files[0].Data, src)
	})
}

// checkDecls fails when the Go source declares a package-level name twice,
// or a struct field and method (or two of them) with one name on one type.
func checkDecls(t *testing.T, goSrc, schema []byte) {
	t.Helper()
	file, err := goparser.ParseFile(token.NewFileSet(), "events_gen.go", goSrc, 0)
	if err != nil {
		t.Fatalf("generated Go does not parse: %v\nschema:\n%s", err, schema)
	}
	seen := map[string]bool{}
	dup := func(name string) {
		if name == "_" {
			return
		}
		if seen[name] {
			t.Fatalf("generated Go declares %s twice\nschema:\n%s", name, schema)
		}
		seen[name] = true
	}
	for _, d := range file.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			name := d.Name.Name
			if d.Recv != nil {
				typ := d.Recv.List[0].Type
				if s, ok := typ.(*ast.StarExpr); ok {
					typ = s.X
				}
				name = typ.(*ast.Ident).Name + "." + name
			}
			dup(name)
		case *ast.GenDecl:
			for _, s := range d.Specs {
				switch s := s.(type) {
				case *ast.TypeSpec:
					dup(s.Name.Name)
					if st, ok := s.Type.(*ast.StructType); ok {
						for _, fl := range st.Fields.List {
							for _, n := range fl.Names {
								dup(s.Name.Name + "." + n.Name)
							}
						}
					}
				case *ast.ValueSpec:
					for _, n := range s.Names {
						dup(n.Name)
					}
				}
			}
		}
	}
}
