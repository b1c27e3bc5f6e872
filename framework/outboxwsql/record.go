package outboxwsql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math"
	"sync"
)

// statement is one recorded Exec.
type statement struct {
	query string
	args  []any
}

// recording collects the statements executed on a Recorder transaction
// whose context carries it.
type recording struct{ stmts []statement }

type recordingKey struct{}

var (
	recorderOnce sync.Once
	recorder     *sql.DB
)

// Recorder returns the process's recording database handle: a *sql.DB
// whose transactions run nothing and only record the statements executed
// on them. A driver built on it turns outbox.Insert into the statement
// watermill-sql's Publisher then runs in the caller's transaction, so the
// adapters reuse the driver's insert and the core's validation unchanged.
// Only Exec is supported: a query or a prepared statement fails.
func Recorder() *sql.DB {
	recorderOnce.Do(func() { recorder = sql.OpenDB(recConnector{}) })
	return recorder
}

// record runs fn in a transaction of Recorder() and returns the statements
// fn executed on it.
func record(ctx context.Context, fn func(context.Context, *sql.Tx) error) ([]statement, error) {
	rec := &recording{}
	ctx = context.WithValue(ctx, recordingKey{}, rec)
	tx, err := Recorder().BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("outbox: recording the insert: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // nothing to roll back
	if err := fn(ctx, tx); err != nil {
		return nil, err
	}
	return rec.stmts, nil
}

var errNotExec = errors.New("outbox: the watermill-sql adapter records the driver's insert, which must be a single Exec; the driver queried or prepared a statement")

type recConnector struct{}

func (recConnector) Connect(context.Context) (driver.Conn, error) { return recConn{}, nil }
func (recConnector) Driver() driver.Driver                        { return recDriver{} }

type recDriver struct{}

func (recDriver) Open(string) (driver.Conn, error) { return recConn{}, nil }

// recConn records ExecContext calls into the recording of their context.
type recConn struct{}

func (recConn) Prepare(string) (driver.Stmt, error) { return nil, errNotExec }
func (recConn) Close() error                        { return nil }
func (recConn) Begin() (driver.Tx, error)           { return recTx{}, nil }

func (recConn) BeginTx(context.Context, driver.TxOptions) (driver.Tx, error) { return recTx{}, nil }

// CheckNamedValue keeps every argument as the driver passed it: the real
// database driver converts it when the statement runs.
func (recConn) CheckNamedValue(*driver.NamedValue) error { return nil }

func (recConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	rec, ok := ctx.Value(recordingKey{}).(*recording)
	if !ok {
		return nil, errors.New("outbox: statement executed on the recording handle outside a recording")
	}
	vals := make([]any, len(args))
	for i, a := range args {
		if a.Name != "" {
			return nil, fmt.Errorf("outbox: the watermill-sql adapter cannot record the named argument %q", a.Name)
		}
		vals[i] = a.Value
	}
	rec.stmts = append(rec.stmts, statement{query: query, args: vals})
	return unrun{}, nil
}

// unrun is the result of a recorded statement, which has not run: it
// reports every row written, so that a driver asks nothing back (its
// duplicate-id check reads after an INSERT that wrote fewer rows than it
// was given). watermill-sql runs the statement itself, in the caller's
// transaction: an id already stored is then skipped by the insert's ON
// CONFLICT clause, and this path reports no outbox.ErrDuplicateEvent.
type unrun struct{}

func (unrun) LastInsertId() (int64, error) {
	return 0, errors.New("outbox: recorded statement has not run")
}
func (unrun) RowsAffected() (int64, error) { return math.MaxInt64, nil }

type recTx struct{}

func (recTx) Commit() error   { return nil }
func (recTx) Rollback() error { return nil }
