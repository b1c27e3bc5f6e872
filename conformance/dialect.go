package conformance

import (
	"database/sql"
	"fmt"
	"sync"
	"testing"
)

// Dialect is the raw SQL the suite's extra tests (RunUnreadableRow,
// RunInbox) need beyond the outbox driver: writing a stored event behind the
// driver's back, and a small business table for the inbox tests. It is
// looked up by Database.Name; "postgres" and "mysql" are built in, another
// dialect registers its own with RegisterDialect.
type Dialect struct {
	// QuoteIdent quotes a table name (already validated) for the dialect.
	QuoteIdent func(name string) string

	// SetColumn overwrites one column of the stored event with the given id
	// in the outbox table (unquoted name, already validated) with value,
	// bypassing every check of the driver and the core. column is one of
	// "headers", "topic", "type" and "key" (the event key, whatever the
	// dialect's column name).
	SetColumn func(db *sql.DB, table, id, column, value string) error

	// CreateEffects creates the business table name (unquoted, validated)
	// with two columns: event_id (text or uuid) and applied_by (integer),
	// without any unique constraint, so that a repeated effect shows up as a
	// second row.
	CreateEffects func(db *sql.DB, name string) error

	// InsertEffect is an INSERT of (event_id, applied_by) into the table
	// name, with the dialect's two placeholders, run in the inbox's
	// transaction.
	InsertEffect func(name string) string

	// DropTables drops the given tables if they exist.
	DropTables func(db *sql.DB, names ...string) error
}

var (
	dialectsMu sync.RWMutex
	dialects   = map[string]Dialect{
		"postgres":     postgresDialect(),
		"postgres_cdc": postgresDialect(),
		"mysql":        mysqlDialect(),
		"sqlite":       sqliteDialect(),
	}
)

// RegisterDialect makes d the Dialect of databases whose Database.Name is
// name, replacing any earlier one (built-ins included).
func RegisterDialect(name string, d Dialect) {
	dialectsMu.Lock()
	defer dialectsMu.Unlock()
	dialects[name] = d
}

// dialectOf returns the registered Dialect of db, or skips the test.
func dialectOf(t testing.TB, db Database) Dialect {
	t.Helper()
	dialectsMu.RLock()
	d, ok := dialects[db.Name]
	dialectsMu.RUnlock()
	if !ok {
		t.Skipf("database %s: no conformance.Dialect registered (see RegisterDialect)", db.Name)
	}
	return d
}

func postgresDialect() Dialect {
	q := func(s string) string { return `"` + s + `"` }
	return Dialect{
		QuoteIdent: q,
		SetColumn: func(db *sql.DB, table, id, column, value string) error {
			cast := ""
			if column == "headers" {
				cast = "::jsonb"
			}
			_, err := db.Exec(fmt.Sprintf(`UPDATE %s SET %s = $1%s WHERE id = $2`, q(table), q(column), cast), value, id)
			return err
		},
		CreateEffects: func(db *sql.DB, name string) error {
			_, err := db.Exec(`CREATE TABLE ` + q(name) + ` (event_id uuid NOT NULL, applied_by integer NOT NULL)`)
			return err
		},
		InsertEffect: func(name string) string {
			return `INSERT INTO ` + q(name) + ` (event_id, applied_by) VALUES ($1, $2)`
		},
		DropTables: func(db *sql.DB, names ...string) error {
			for _, n := range names {
				if _, err := db.Exec(`DROP TABLE IF EXISTS ` + q(n)); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func mysqlDialect() Dialect {
	q := func(s string) string { return "`" + s + "`" }
	return Dialect{
		QuoteIdent: q,
		SetColumn: func(db *sql.DB, table, id, column, value string) error {
			if column == "key" {
				column = "event_key"
			}
			_, err := db.Exec(fmt.Sprintf("UPDATE %s SET %s = ? WHERE id = ?", q(table), q(column)), value, id)
			return err
		},
		CreateEffects: func(db *sql.DB, name string) error {
			_, err := db.Exec("CREATE TABLE " + q(name) + " (event_id CHAR(36) NOT NULL, applied_by INT NOT NULL) ENGINE=InnoDB")
			return err
		},
		InsertEffect: func(name string) string {
			return "INSERT INTO " + q(name) + " (event_id, applied_by) VALUES (?, ?)"
		},
		DropTables: func(db *sql.DB, names ...string) error {
			for _, n := range names {
				if _, err := db.Exec("DROP TABLE IF EXISTS " + q(n)); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func sqliteDialect() Dialect {
	q := func(s string) string { return `"` + s + `"` }
	return Dialect{
		QuoteIdent: q,
		SetColumn: func(db *sql.DB, table, id, column, value string) error {
			_, err := db.Exec(fmt.Sprintf(`UPDATE %s SET %s = ? WHERE id = ?`, q(table), q(column)), value, id)
			return err
		},
		CreateEffects: func(db *sql.DB, name string) error {
			_, err := db.Exec(`CREATE TABLE ` + q(name) + ` (event_id TEXT NOT NULL, applied_by INTEGER NOT NULL)`)
			return err
		},
		InsertEffect: func(name string) string {
			return `INSERT INTO ` + q(name) + ` (event_id, applied_by) VALUES (?, ?)`
		},
		DropTables: func(db *sql.DB, names ...string) error {
			for _, n := range names {
				if _, err := db.Exec(`DROP TABLE IF EXISTS ` + q(n)); err != nil {
					return err
				}
			}
			return nil
		},
	}
}
