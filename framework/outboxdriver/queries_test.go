package outboxdriver_test

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

func TestRenderQueries(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		"q/get.sql":       {Data: []byte("-- one event\nSELECT * FROM {{.Table}}\n  -- indented comment\nWHERE id = $1\n")},
		"q/mark.sql":      {Data: []byte("{{if .Delete}}DELETE FROM {{.Table}}{{else}}UPDATE {{.Table}} SET x = 1{{end}}\nWHERE seq = $1")},
		"q/list.sql.tmpl": {Data: []byte("{{.Nope}}")},
	}
	data := struct {
		Table  string
		Delete bool
	}{Table: `"t"`, Delete: true}
	got, err := outboxdriver.RenderQueries(fsys, "q", data, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["get"] != "SELECT * FROM \"t\"\nWHERE id = $1" || got["mark"] != "DELETE FROM \"t\"\nWHERE seq = $1" {
		t.Fatalf("rendered %q", got)
	}

	t.Run("unknown field is an error", func(t *testing.T) {
		t.Parallel()
		_, err := outboxdriver.RenderQueries(fstest.MapFS{"q/a.sql": {Data: []byte("{{.Nope}}")}}, "q", data, nil)
		if err == nil || !strings.Contains(err.Error(), "a.sql") {
			t.Fatalf("want an error naming a.sql, got %v", err)
		}
	})
}

func TestBindQueries(t *testing.T) {
	t.Parallel()
	var get, mark string
	if err := outboxdriver.BindQueries(map[string]string{"get": "G", "mark": "M"}, map[string]*string{"get": &get, "mark": &mark}); err != nil || get != "G" || mark != "M" {
		t.Fatalf("bound get=%q mark=%q, err %v", get, mark, err)
	}
	err := outboxdriver.BindQueries(map[string]string{"get": "G", "extra": "E"}, map[string]*string{"get": &get, "mark": &mark})
	if err == nil || !strings.Contains(err.Error(), "mark.sql") || !strings.Contains(err.Error(), "extra.sql") {
		t.Fatalf("want an error naming the missing mark.sql and the unused extra.sql, got %v", err)
	}
}
