package mysql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

type migration struct {
	version    int
	statements []string
}

// statementEnd splits a migration file: a semicolon that ends a line ends a
// statement (the connection does not enable multiStatements).
var statementEnd = regexp.MustCompile(`;[ \t]*(\r?\n|$)`)

// migrations renders the embedded, versioned migration files for this table.
func (d *Driver) migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	data := struct{ Table, LockTable string }{Table: d.table, LockTable: d.lockTable}
	var out []migration
	for _, e := range entries {
		v, err := strconv.Atoi(strings.SplitN(e.Name(), "_", 2)[0])
		if err != nil {
			return nil, fmt.Errorf("mysql: migration %s: name must start with a version number", e.Name())
		}
		raw, err := migrationFS.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		tmpl, err := template.New(e.Name()).Parse(string(raw))
		if err != nil {
			return nil, fmt.Errorf("mysql: migration %s: %w", e.Name(), err)
		}
		var b strings.Builder
		if err := tmpl.Execute(&b, data); err != nil {
			return nil, fmt.Errorf("mysql: migration %s: %w", e.Name(), err)
		}
		m := migration{version: v}
		for _, stmt := range statementEnd.Split(b.String(), -1) {
			if hasSQL(stmt) {
				m.statements = append(m.statements, strings.TrimSpace(stmt))
			}
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

// hasSQL reports whether s has anything besides blank and "--" comment lines.
func hasSQL(s string) bool {
	for line := range strings.SplitSeq(s, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "--") {
			return true
		}
	}
	return false
}

type querier interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}

func (d *Driver) appliedVersions(ctx context.Context, q querier) (map[int]bool, error) {
	rows, err := q.QueryContext(ctx, "SELECT version FROM "+d.verTable)
	if err != nil {
		return nil, interpretError(err)
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

// migrateLockTimeout is how long MigrateUp waits for another process's
// migration, in seconds.
const migrateLockTimeout = 60

// MigrateUp implements outboxdriver.Driver. MySQL commits DDL implicitly, so
// migrations cannot run in one transaction: instead they run on one
// connection under a named lock (GET_LOCK) that serializes concurrent
// callers, and every statement is idempotent (CREATE TABLE IF NOT EXISTS) so
// a migration interrupted half-way can simply run again.
func (d *Driver) MigrateUp(ctx context.Context, _ *outboxdriver.MigrateUpParams) (err error) {
	if err := d.checkServer(ctx); err != nil {
		return err
	}
	migs, err := d.migrations()
	if err != nil {
		return err
	}
	conn, err := d.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("mysql: migrate: %w", interpretError(err))
	}
	defer conn.Close()
	// GET_LOCK names are at most 64 characters: hash database and table.
	const lockName = "CONCAT('outboxkit_migrate_', LEFT(SHA2(CONCAT(DATABASE(), '.', ?), 256), 40))"
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK("+lockName+", ?)", d.cfg.Table, migrateLockTimeout).Scan(&got); err != nil {
		return fmt.Errorf("mysql: migrate: take migration lock: %w", interpretError(err))
	}
	if got.Int64 != 1 {
		return fmt.Errorf("mysql: migrate: another process held the migration lock of %s for %ds", d.table, migrateLockTimeout)
	}
	defer func() {
		// A named lock belongs to the session: if it cannot be released,
		// discard the connection rather than pool it with the lock held.
		var released sql.NullInt64
		relErr := conn.QueryRowContext(context.WithoutCancel(ctx), "SELECT RELEASE_LOCK("+lockName+")", d.cfg.Table).Scan(&released)
		if relErr != nil || released.Int64 != 1 {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()

	if _, err := conn.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+d.verTable+
		" (version INT NOT NULL PRIMARY KEY, applied_at DATETIME(6) NOT NULL) ENGINE=InnoDB"); err != nil {
		return fmt.Errorf("mysql: migrate: create versions table: %w", interpretError(err))
	}
	applied, err := d.appliedVersions(ctx, conn)
	if err != nil {
		return fmt.Errorf("mysql: migrate: %w", err)
	}
	for _, m := range migs {
		if applied[m.version] {
			continue
		}
		for i, stmt := range m.statements {
			if _, err := conn.ExecContext(ctx, stmt); err != nil && !alreadyApplied(err) {
				return fmt.Errorf("mysql: migration %d, statement %d: %w", m.version, i+1, interpretError(err))
			}
		}
		if _, err := conn.ExecContext(ctx, "INSERT INTO "+d.verTable+" (version, applied_at) VALUES (?, UTC_TIMESTAMP(6))", m.version); err != nil {
			return fmt.Errorf("mysql: migration %d: record version: %w", m.version, interpretError(err))
		}
	}
	return nil
}

// MigrateStatus implements outboxdriver.Driver.
func (d *Driver) MigrateStatus(ctx context.Context, _ *outboxdriver.MigrateStatusParams) (*outboxdriver.MigrateStatus, error) {
	migs, err := d.migrations()
	if err != nil {
		return nil, err
	}
	applied, err := d.appliedVersions(ctx, d.db)
	if err != nil && !errors.Is(err, outboxdriver.ErrNotMigrated) {
		return nil, err
	}
	st := &outboxdriver.MigrateStatus{}
	for _, m := range migs {
		if applied[m.version] {
			st.Applied = append(st.Applied, m.version)
		} else {
			st.Pending = append(st.Pending, m.version)
		}
	}
	return st, nil
}

// alreadyApplied reports whether a DDL statement failed because its change
// is already there (a migration interrupted after the statement and before
// its version was recorded): MySQL has no ADD KEY IF NOT EXISTS.
func alreadyApplied(err error) bool {
	var me *gomysql.MySQLError
	return errors.As(err, &me) && me.Number == erDupKeyName
}
