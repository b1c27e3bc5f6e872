package outboxdriver

import (
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"text/template"
)

// RenderQueries reads the .sql files of dir in fsys (an embedded folder of
// named statements), renders each once as a text/template with data and
// funcs (validated, quoted identifiers and fixed settings only: never user
// input; values are bind parameters), and returns them by file name without
// the .sql suffix. Lines that are whole "--" comments are dropped from the
// result (they document the file; the database need not receive them on
// every call). Files with another suffix are ignored.
func RenderQueries(fsys fs.FS, dir string, data any, funcs template.FuncMap) (map[string]string, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".sql")
		if !ok || e.IsDir() {
			continue
		}
		raw, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		tmpl, err := template.New(e.Name()).Funcs(funcs).Option("missingkey=error").Parse(string(raw))
		if err != nil {
			return nil, fmt.Errorf("query %s: %w", e.Name(), err)
		}
		var b strings.Builder
		if err := tmpl.Execute(&b, data); err != nil {
			return nil, fmt.Errorf("query %s: %w", e.Name(), err)
		}
		out[name] = StripCommentLines(b.String())
	}
	return out, nil
}

// BindQueries assigns each rendered query (from RenderQueries) to the
// string its name maps to in dst. It fails, naming the files, when a query
// of dst has no file or a file has no place in dst, so that a driver's
// typed query struct and its embedded folder never drift apart.
func BindQueries(queries map[string]string, dst map[string]*string) error {
	var missing, unused []string
	for name, p := range dst {
		q, ok := queries[name]
		if !ok {
			missing = append(missing, name+".sql")
			continue
		}
		*p = q
	}
	for name := range queries {
		if _, ok := dst[name]; !ok {
			unused = append(unused, name+".sql")
		}
	}
	if len(missing) == 0 && len(unused) == 0 {
		return nil
	}
	sort.Strings(missing)
	sort.Strings(unused)
	return fmt.Errorf("queries: missing files %v, unused files %v", missing, unused)
}

// StripCommentLines drops blank lines and whole-line "--" comments: what
// RenderQueries does to every query, for drivers that render a fragment
// into other statements themselves.
func StripCommentLines(s string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(s, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "--") {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(strings.TrimRight(line, " \t\r"))
	}
	return b.String()
}
