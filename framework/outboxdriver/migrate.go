package outboxdriver

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"text/template"
)

// Migration is one versioned schema migration, rendered for one table.
type Migration struct {
	Version int
	SQL     string
}

// RenderMigrations reads the files of dir in fsys (an embedded folder of
// NNN_name.sql files, NNN the version), renders each as a text/template with
// data and funcs (validated, quoted identifiers only: never user input), and
// returns them ordered by version.
func RenderMigrations(fsys fs.FS, dir string, data any, funcs template.FuncMap) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, e := range entries {
		v, err := strconv.Atoi(strings.SplitN(e.Name(), "_", 2)[0])
		if err != nil {
			return nil, fmt.Errorf("migration %s: name must start with a version number", e.Name())
		}
		raw, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		tmpl, err := template.New(e.Name()).Funcs(funcs).Parse(string(raw))
		if err != nil {
			return nil, fmt.Errorf("migration %s: %w", e.Name(), err)
		}
		var b strings.Builder
		if err := tmpl.Execute(&b, data); err != nil {
			return nil, fmt.Errorf("migration %s: %w", e.Name(), err)
		}
		out = append(out, Migration{Version: v, SQL: b.String()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// Querier is what AppliedVersions reads with: a *sql.DB, *sql.Tx or *sql.Conn.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// AppliedVersions reads the applied versions from a migrations table (one
// integer column named version). Errors are returned as the database/sql
// driver gave them: the caller translates them.
func AppliedVersions(ctx context.Context, q Querier, versionsTable string) (map[int]bool, error) {
	rows, err := q.QueryContext(ctx, "SELECT version FROM "+versionsTable)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	applied := map[int]bool{}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		applied[v] = true
	}
	return applied, rows.Err()
}

// NewMigrateStatus splits migrations into applied and pending ones.
func NewMigrateStatus(migrations []Migration, applied map[int]bool) *MigrateStatus {
	st := &MigrateStatus{}
	for _, m := range migrations {
		if applied[m.Version] {
			st.Applied = append(st.Applied, m.Version)
		} else {
			st.Pending = append(st.Pending, m.Version)
		}
	}
	return st
}
