package mysql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"regexp"
	"strings"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// statementEnd splits a migration file: a semicolon that ends a line ends a
// statement (the connection does not enable multiStatements).
var statementEnd = regexp.MustCompile(`;[ \t]*(\r?\n|$)`)

// migrations renders the embedded, versioned migration files for this table.
func (d *Driver) migrations() ([]outboxdriver.Migration, error) {
	data := struct{ Table, LockTable, AckTable string }{Table: d.table, LockTable: d.lockTable, AckTable: d.ackTable}
	migs, err := outboxdriver.RenderMigrations(migrationFS, "migrations", data, nil)
	if err != nil {
		return nil, fmt.Errorf("mysql: %w", err)
	}
	return migs, nil
}

// statements splits a rendered migration into its statements.
func statements(m outboxdriver.Migration) []string {
	var out []string
	for _, stmt := range statementEnd.Split(m.SQL, -1) {
		if hasSQL(stmt) {
			out = append(out, strings.TrimSpace(stmt))
		}
	}
	return out
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

func (d *Driver) appliedVersions(ctx context.Context, q outboxdriver.Querier) (map[int]bool, error) {
	applied, err := outboxdriver.AppliedVersions(ctx, q, d.verTable)
	return applied, interpretError(err)
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
		if applied[m.Version] {
			continue
		}
		for i, stmt := range statements(m) {
			if _, err := conn.ExecContext(ctx, stmt); err != nil && !alreadyApplied(err) {
				return fmt.Errorf("mysql: migration %d, statement %d: %w", m.Version, i+1, interpretError(err))
			}
		}
		if _, err := conn.ExecContext(ctx, "INSERT INTO "+d.verTable+" (version, applied_at) VALUES (?, UTC_TIMESTAMP(6))", m.Version); err != nil {
			return fmt.Errorf("mysql: migration %d: record version: %w", m.Version, interpretError(err))
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
	return outboxdriver.NewMigrateStatus(migs, applied), nil
}

// alreadyApplied reports whether a DDL statement failed because its change
// is already there (a migration interrupted after the statement and before
// its version was recorded): MySQL has no ADD KEY IF NOT EXISTS.
func alreadyApplied(err error) bool {
	var me *gomysql.MySQLError
	return errors.As(err, &me) && me.Number == erDupKeyName
}
