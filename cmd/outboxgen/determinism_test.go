package main

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"
)

// Order in outbox.yaml: the order of the types section, of the events list
// and of the keys inside any mapping other than a fields mapping carries no
// meaning, and reordering them must give byte-identical outputs. The order
// of the fields of an event or object is semantic (struct field order, JSON
// key order, JSON Schema property order), and so is the order of enum values
// (constant order); both are kept as written.

// shuffleSchema reorders every non-semantic sequence and mapping of a
// parsed outbox.yaml in place.
func shuffleSchema(n *yaml.Node, rng *rand.Rand) {
	root := n
	if root.Kind == yaml.DocumentNode {
		root = root.Content[0]
	}
	shuffleMapping(root, rng)
	for i := 0; i+1 < len(root.Content); i += 2 {
		v := root.Content[i+1]
		switch root.Content[i].Value {
		case "types":
			shuffleMapping(v, rng)
			for j := 1; j < len(v.Content); j += 2 {
				shuffleObject(v.Content[j], rng)
			}
		case "events":
			rng.Shuffle(len(v.Content), func(a, b int) { v.Content[a], v.Content[b] = v.Content[b], v.Content[a] })
			for _, e := range v.Content {
				shuffleObject(e, rng)
			}
		case "info":
			shuffleMapping(v, rng)
		}
	}
}

// shuffleObject shuffles the keys of a type or event and of each field's
// definition, keeping the order of the fields themselves.
func shuffleObject(n *yaml.Node, rng *rand.Rand) {
	shuffleMapping(n, rng)
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "fields" {
			fs := n.Content[i+1]
			for j := 1; j < len(fs.Content); j += 2 {
				shuffleField(fs.Content[j], rng)
			}
		}
	}
}

func shuffleField(n *yaml.Node, rng *rand.Rand) {
	shuffleMapping(n, rng)
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i].Value; k == "items" || k == "values" {
			shuffleField(n.Content[i+1], rng)
		}
	}
}

func shuffleMapping(n *yaml.Node, rng *rand.Rand) {
	if n.Kind != yaml.MappingNode {
		return
	}
	pairs := len(n.Content) / 2
	rng.Shuffle(pairs, func(a, b int) {
		n.Content[2*a], n.Content[2*b] = n.Content[2*b], n.Content[2*a]
		n.Content[2*a+1], n.Content[2*b+1] = n.Content[2*b+1], n.Content[2*a+1]
	})
}

// renderAll renders src like `outboxgen generate` plus the lock file.
func renderAll(t *testing.T, src []byte) []File {
	t.Helper()
	spec, err := Parse("outbox.yaml", src)
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, src)
	}
	files, err := Render(spec, "p", "events_gen.go", "{type}.v{version}.schema.json", "asyncapi.json")
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	lock, err := MarshalLock(BuildLock(spec))
	if err != nil {
		t.Fatal(err)
	}
	return append(files, File{"outbox.lock.json", lock})
}

func sameFiles(a, b []File) (string, bool) {
	if len(a) != len(b) {
		return "file count", false
	}
	for i := range a {
		if a[i].Name != b[i].Name || !bytes.Equal(a[i].Data, b[i].Data) {
			return a[i].Name, false
		}
	}
	return "", true
}

func schemaInputs(t testing.TB) []string {
	t.Helper()
	paths, err := filepath.Glob("testdata/golden/*/outbox.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return append(paths, "examples/invoicing/outbox.yaml")
}

func TestDeterministicUnderShuffledInput(t *testing.T) {
	t.Parallel()
	for _, path := range schemaInputs(t) {
		t.Run(filepath.Base(filepath.Dir(path)), func(t *testing.T) {
			t.Parallel()
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			want := renderAll(t, src)
			for seed := range uint64(20) {
				var doc yaml.Node
				if err := yaml.Unmarshal(src, &doc); err != nil {
					t.Fatal(err)
				}
				shuffleSchema(&doc, rand.New(rand.NewPCG(seed, 42)))
				shuffled, err := yaml.Marshal(&doc)
				if err != nil {
					t.Fatal(err)
				}
				if name, ok := sameFiles(want, renderAll(t, shuffled)); !ok {
					t.Fatalf("seed %d: %s differs after reordering non-semantic input:\n%s", seed, name, shuffled)
				}
			}
		})
	}
}

// TestFieldOrderIsSemantic proves the test above can fail: swapping two
// fields changes the generated struct.
func TestFieldOrderIsSemantic(t *testing.T) {
	t.Parallel()
	a := okEvent + "      amount: {type: decimal}\n      note: {type: string}\n"
	b := okEvent + "      note: {type: string}\n      amount: {type: decimal}\n"
	if _, ok := sameFiles(renderAll(t, []byte(a)), renderAll(t, []byte(b))); ok {
		t.Fatal("swapping two fields did not change the output")
	}
}
