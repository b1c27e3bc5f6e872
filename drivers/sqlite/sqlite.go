// Package sqlite is the SQLite driver of outboxkit, the embedded default: it
// runs on the pure-Go modernc.org/sqlite (no cgo, registered as "sqlite"), so
// a service, a test or a demo gets a working transactional outbox with no
// database server at all.
//
// SQLite has one writer at a time. Every relay and admin write runs in its
// own short BEGIN IMMEDIATE transaction, taking the lock as application
// transactions do: claims serialize between relays and per-key order holds,
// and each other relay write is one bounded UPDATE. In a process, the
// driver's write transactions on a file queue one at a time, with a pause
// after each, and an idle relay looks for ready rows without the lock. The
// relay never holds the write lock while it talks to the broker, so an
// application transaction waits at most for one short relay statement
// (busy_timeout covers it), never for a publish.
//
// Limits: a SQLite database is one file on one node. Run the relay in the
// process (or on the machine) that owns the file, one relay per database file
// is recommended (several are correct, they just take turns), and expect
// writers to serialize. Use drivers/postgres or drivers/mysql when several
// machines write events.
//
// Open the database with Open, which sets WAL mode, a busy timeout, foreign
// keys and immediate transactions; see its documentation for why.
package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"time"

	sqlitelib "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// DefaultTable is the default Config.Table.
const DefaultTable = "outbox"

// DefaultBusyTimeout is the busy timeout Open sets: how long a connection
// waits for another connection's write lock before failing with SQLITE_BUSY.
const DefaultBusyTimeout = 5 * time.Second

// DSN returns the modernc.org/sqlite data source name Open uses for the
// database file at path:
//
//   - journal_mode=WAL: readers (admin queries, the relay's reads) never block
//     the writer and the writer never blocks them;
//   - busy_timeout=5000: a connection waits up to 5 s for the write lock
//     instead of failing at once with SQLITE_BUSY;
//   - foreign_keys=ON: enforce the business schema's foreign keys;
//   - synchronous=FULL: a committed transaction survives a power loss;
//   - _txlock=immediate: every transaction begun with BeginTx takes the write
//     lock at BEGIN. A deferred transaction that reads first and writes later
//     can fail with SQLITE_BUSY when another connection committed in between;
//     an immediate one just waits its turn.
//
// Append further parameters with "&" (for example "&_pragma=cache_size(-20000)").
// path must not contain '?'.
func DSN(path string) string {
	return "file:" + path + "?_pragma=busy_timeout(" + strconv.FormatInt(DefaultBusyTimeout.Milliseconds(), 10) + ")" +
		"&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)&_txlock=immediate"
}

// Open opens (creating if needed) the SQLite database file at path with the
// settings DSN documents and checks that it is usable. The same *sql.DB is
// meant for the application's business tables, the outbox Writer and the
// relay: the outbox only works when events are written in the business
// transaction, so both must live in this one file.
//
// ":memory:" is refused: every pooled connection would get its own empty
// database.
func Open(path string) (*sql.DB, error) {
	if path == "" || strings.Contains(path, "?") || strings.Contains(path, ":memory:") {
		return nil, fmt.Errorf("%w: sqlite: path %q must be a file path without '?' (in-memory databases are per connection)",
			outboxdriver.ErrInvalidConfig, path)
	}
	db, err := sql.Open("sqlite", DSN(path))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := db.PingContext(context.Background()); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return db, nil
}

// Config configures the SQLite driver.
type Config struct {
	// Table is the outbox table name. Empty means "outbox". It must match
	// ^[A-Za-z_][A-Za-z0-9_]{0,62}$.
	Table string
}

// Driver implements outboxdriver.Driver for SQLite.
type Driver struct {
	db       *sql.DB
	cfg      Config
	table    string // quoted
	ackTable string // quoted <table>_acks
	queries  queries

	fileOnce sync.Once
	file     string // the database's main file, once known (writeKey)
}

var _ outboxdriver.Driver = (*Driver)(nil)

// New returns a driver using db, normally opened with Open. It checks the
// configuration only; it does not create the table (see MigrateUp).
func New(db *sql.DB, cfg Config) (*Driver, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: sqlite: db must not be nil", outboxdriver.ErrInvalidConfig)
	}
	cfg.Table = cmp.Or(cfg.Table, DefaultTable)
	if err := outboxdriver.ValidateIdentifier("sqlite.Config.Table", cfg.Table); err != nil {
		return nil, err
	}
	d := &Driver{db: db, cfg: cfg, table: quote(cfg.Table), ackTable: quote(cfg.Table + "_acks")}
	q, err := newQueries(d.table, d.ackTable)
	if err != nil {
		return nil, err
	}
	d.queries = q
	return d, nil
}

// Ping checks that the database is reachable and the table migrated,
// returning an error that says which is wrong.
func (d *Driver) Ping(ctx context.Context) error {
	if err := d.db.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: cannot reach database: %w", err)
	}
	var n int
	err := d.db.QueryRowContext(ctx, "SELECT 1 FROM "+d.table+" LIMIT 1").Scan(&n)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return interpretError(err)
	}
	return nil
}

// DB implements outboxdriver.Driver.
func (d *Driver) DB() *sql.DB { return d.db }

// Name implements outboxdriver.Driver.
func (d *Driver) Name() string { return "sqlite" }

// Table implements outboxdriver.Driver.
func (d *Driver) Table() string { return d.table }

func quote(ident string) string { return `"` + ident + `"` }

// interpretError is the one place SQLite errors become outbox errors.
func interpretError(err error) error {
	if err == nil {
		return nil
	}
	var se *sqlitelib.Error
	if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_ERROR && strings.Contains(se.Error(), "no such table") {
		return fmt.Errorf("%w: %w", outboxdriver.ErrNotMigrated, err)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return outboxdriver.ErrNotFound
	}
	return err
}

// now is the database clock in unix microseconds. SQLite evaluates 'now'
// once per statement step, so every use in one statement sees the same
// instant. unixepoch('subsec') has millisecond precision.
const now = `(CAST(round(unixepoch('subsec') * 1000) AS INTEGER) * 1000)`

const columns = `seq, id, type, topic, key, payload, headers, status, attempts, coalesce(last_error, ''),
	created_at, next_attempt_at, delivered_at, coalesce(locked_by, ''), locked_until`

// ids expands to the ids of a JSON array bound as the given parameter.
func ids(param string) string { return `(SELECT value FROM json_each(` + param + `))` }

type queries struct {
	insertPrefix, insertRow, insertSuffix, duplicates    string
	candidates, claim, extend, markDelivered, markFailed string
	release                                              string
	retryIDs, retryDead, purge, stats, get, list         string
	ackAnswer, ackExists, ackGet, ackList, ackDue        string
	ackMarkResent, ackMarkUnacknowledged, ackRearm       string
	ackStats, ackPurge                                   string
}

//go:embed queries/*.sql
var queryFS embed.FS

// newQueries renders every statement for one table, once: the relay and
// admin statements from the embedded queries/*.sql files, the INSERT's
// fragments here (it is assembled per call, one row per event). The only
// substitutions are {T}, the validated, quoted table name, {NOW}, the
// database clock in unix microseconds, {IDS}, the ids of the JSON array
// bound as ?1, {COLUMNS}, the stored event's columns, {A}, the quoted ack
// table, and {ACKCOLUMNS}, its columns (alias a); values are always bind
// parameters.
func newQueries(t, a string) (queries, error) {
	r := strings.NewReplacer("{T}", t, "{NOW}", now, "{IDS}", ids("?1"), "{COLUMNS}", columns)
	claimable, err := queryFS.ReadFile("queries/claimable.sql")
	if err != nil {
		return queries{}, fmt.Errorf("sqlite: query claimable: %w", err)
	}
	r = strings.NewReplacer("{T}", t, "{NOW}", now, "{IDS}", ids("?1"), "{COLUMNS}", columns,
		"{A}", a, "{ACKCOLUMNS}", ackColumns,
		"{CLAIMABLE}", r.Replace(outboxdriver.StripCommentLines(string(claimable))))
	q := queries{
		insertPrefix: r.Replace(`INSERT INTO {T} (id, type, topic, key, payload, headers, created_at, next_attempt_at) VALUES `),
		insertRow:    r.Replace(`(?,?,?,?,?,?,?,{NOW})`),
		insertSuffix: ` ON CONFLICT (id) DO NOTHING`,
	}
	for name, dst := range map[string]*string{
		"duplicates": &q.duplicates, "candidates": &q.candidates, "claim": &q.claim, "extend": &q.extend,
		"mark_delivered": &q.markDelivered, "mark_failed": &q.markFailed, "release": &q.release,
		"retry_ids": &q.retryIDs, "retry_dead": &q.retryDead, "purge": &q.purge, "stats": &q.stats,
		"get": &q.get, "list": &q.list,
		"ack_answer": &q.ackAnswer, "ack_exists": &q.ackExists, "ack_get": &q.ackGet, "ack_list": &q.ackList,
		"ack_due": &q.ackDue, "ack_mark_resent": &q.ackMarkResent, "ack_mark_unacknowledged": &q.ackMarkUnacknowledged,
		"ack_rearm": &q.ackRearm, "ack_stats": &q.ackStats, "ack_purge": &q.ackPurge,
	} {
		b, err := queryFS.ReadFile("queries/" + name + ".sql")
		if err != nil {
			return queries{}, fmt.Errorf("sqlite: query %s: %w", name, err)
		}
		*dst = r.Replace(string(b))
	}
	return q, nil
}

// maxInsertRows keeps one INSERT well under SQLite's 32766 bind parameters.
const maxInsertRows = 500

// EventInsert implements outboxdriver.Driver.
func (d *Driver) EventInsert(ctx context.Context, p *outboxdriver.EventInsertParams) error {
	for start := 0; start < len(p.Events); start += maxInsertRows {
		chunk := p.Events[start:min(start+maxInsertRows, len(p.Events))]
		var b strings.Builder
		b.WriteString(d.queries.insertPrefix)
		args := make([]any, 0, len(chunk)*7)
		for i, e := range chunk {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(d.queries.insertRow)
			payload := e.Payload
			if payload == nil {
				payload = []byte{}
			}
			args = append(args, e.ID, e.Type, e.Topic, e.Key, payload, string(e.Headers), e.CreatedAt.UnixMicro())
		}
		b.WriteString(d.queries.insertSuffix)
		res, err := p.Tx.ExecContext(ctx, b.String(), args...)
		if err != nil {
			return interpretError(err)
		}
		// ON CONFLICT DO NOTHING counts inserted rows only: a short count
		// alone costs the read-back that tells an idempotent retry from a
		// reused id.
		if n, err := res.RowsAffected(); err != nil || n < int64(len(chunk)) {
			ids := make([]string, len(chunk))
			for i, e := range chunk {
				ids[i] = e.ID
			}
			if err := outboxdriver.CheckDuplicates(ctx, p.Tx, d.queries.duplicates, []any{idList(ids)}, chunk, start); err != nil {
				return interpretError(err)
			}
		}
		if err := d.insertAcks(ctx, p.Tx, chunk); err != nil {
			return err
		}
	}
	return nil
}

// immediate runs fn in a BEGIN IMMEDIATE transaction on a dedicated
// connection: the write lock is taken at BEGIN (waiting up to busy_timeout),
// so what fn reads cannot be changed by another writer before it writes.
// database/sql cannot ask for an IMMEDIATE transaction itself unless the DSN
// says _txlock=immediate, and the driver must not depend on how the caller
// opened the database.
//
// The driver's write transactions on one database file also queue in Go
// (per process), one at a time, before asking SQLite for the lock: SQLite's busy handler is no queue
// (a waiter sleeps and retries, up to 100 ms apart), so relays retrying
// against each other would keep the lock busy and starve an application
// writer past its busy timeout. With the queue, a writer competes with at
// most one short relay transaction at a time.
func (d *Driver) immediate(ctx context.Context, fn func(*sql.Conn) error) error {
	release, err := acquireWriteTurn(ctx, d.writeKey(ctx))
	if err != nil {
		return err
	}
	defer release()
	conn, err := d.db.Conn(ctx)
	if err != nil {
		return interpretError(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		discardIfInTx(conn)
		return interpretError(err)
	}
	if err := fn(conn); err != nil {
		discardIfInTx(conn)
		return err
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		discardIfInTx(conn)
		return interpretError(err)
	}
	return nil
}

// writeTurns holds, per database file (or per *sql.DB when the file is
// unknown), the token of its one write turn in this process.
var writeTurns sync.Map // string or *sql.DB -> chan struct{}

// writeKey is the key of the driver's database in writeTurns: its main
// file, so that drivers on several *sql.DB of one file share the queue.
func (d *Driver) writeKey(ctx context.Context) any {
	d.fileOnce.Do(func() {
		var file string
		err := d.db.QueryRowContext(ctx, "SELECT file FROM pragma_database_list WHERE name = 'main'").Scan(&file)
		if err == nil && file != "" {
			d.file = file
		}
	})
	if d.file != "" {
		return d.file
	}
	return d.db
}

// maxWriteGap bounds the pause a write turn keeps after its transaction.
const maxWriteGap = 20 * time.Millisecond

// acquireWriteTurn waits for the database's write turn (or ctx) and returns
// the function that gives it back. The turn is given back after a pause as
// long as the transaction took (at most maxWriteGap), without making the
// caller wait: back-to-back relay transactions then hold SQLite's lock at
// most half of the time, so an application writer, whose busy handler
// retries every few to 100 ms, gets the lock within a few retries instead
// of starving past its busy timeout.
func acquireWriteTurn(ctx context.Context, key any) (func(), error) {
	v, _ := writeTurns.LoadOrStore(key, make(chan struct{}, 1))
	turn := v.(chan struct{})
	select {
	case turn <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	start := time.Now()
	return func() {
		gap := min(time.Since(start), maxWriteGap)
		time.AfterFunc(gap, func() { <-turn })
	}, nil
}

// execImmediate runs one relay or admin write statement in its own BEGIN
// IMMEDIATE transaction: it takes the write lock the way application
// transactions do (Open's _txlock=immediate), waits its turn like them, and
// holds the lock for that one bounded statement only.
func (d *Driver) execImmediate(ctx context.Context, query string, args ...any) (int64, error) {
	var n int64
	err := d.immediate(ctx, func(conn *sql.Conn) error {
		res, err := conn.ExecContext(ctx, query, args...)
		if err != nil {
			return interpretError(err)
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}

// discardIfInTx rolls back whatever transaction the connection may still
// have open. If that fails, the connection is thrown away rather than
// returned to the pool with a transaction (and the write lock) still open.
func discardIfInTx(conn *sql.Conn) {
	_, err := conn.ExecContext(context.Background(), "ROLLBACK")
	if err == nil || strings.Contains(err.Error(), "no transaction is active") {
		return
	}
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
}

// EventClaimBatch implements outboxdriver.Driver. The claim runs in a BEGIN
// IMMEDIATE transaction: claims of several relays serialize, and the per-key
// check reads the latest committed state.
func (d *Driver) EventClaimBatch(ctx context.Context, p *outboxdriver.EventClaimBatchParams) ([]*outboxdriver.EventRow, error) {
	// Search without the write lock (a WAL reader blocks no one): an idle
	// relay polls often, and a backlog whose keys are all held is stepped
	// over row by row. Only the candidates found are checked again, and
	// leased, under the lock.
	if p.Limit <= 0 {
		return nil, nil
	}
	var candidates string
	if err := d.db.QueryRowContext(ctx, d.queries.candidates, p.Limit).Scan(&candidates); err != nil {
		return nil, interpretError(err)
	}
	if candidates == "[]" {
		return nil, nil
	}
	var out []*outboxdriver.EventRow
	err := d.immediate(ctx, func(conn *sql.Conn) error {
		out = out[:0]
		rows, err := conn.QueryContext(ctx, d.queries.claim, p.RelayID, p.Lease.Milliseconds(), p.Limit, candidates)
		if err != nil {
			return interpretError(err)
		}
		defer rows.Close()
		for rows.Next() {
			r := &outboxdriver.EventRow{Status: outboxdriver.StatusPending, LockedBy: p.RelayID}
			var created, next, lockedUntil int64
			if err := rows.Scan(&r.Seq, &r.ID, &r.Type, &r.Topic, &r.Key, &r.Payload, &r.Headers, &r.Attempts,
				&created, &next, &lockedUntil); err != nil {
				return interpretError(err)
			}
			r.CreatedAt, r.NextAttemptAt = fromMicros(created), fromMicros(next)
			lu := fromMicros(lockedUntil)
			r.LockedUntil = &lu
			out = append(out, r)
		}
		return interpretError(rows.Err())
	})
	if err != nil {
		return nil, err
	}
	// RETURNING gives no order guarantee.
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out, nil
}

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

func idList(ids []string) string {
	b, _ := json.Marshal(ids) // []string always marshals
	return string(b)
}

// EventExtendLeases implements outboxdriver.Driver.
func (d *Driver) EventExtendLeases(ctx context.Context, p *outboxdriver.EventExtendLeasesParams) (int64, error) {
	if len(p.IDs) == 0 {
		return 0, nil
	}
	return d.execImmediate(ctx, d.queries.extend, idList(p.IDs), p.RelayID, p.Lease.Milliseconds())
}

// EventMarkDelivered implements outboxdriver.Driver.
func (d *Driver) EventMarkDelivered(ctx context.Context, p *outboxdriver.EventMarkDeliveredParams) (int64, error) {
	if len(p.IDs) == 0 {
		return 0, nil
	}
	return d.execImmediate(ctx, d.queries.markDelivered, idList(p.IDs), p.RelayID)
}

type failedJSON struct {
	ID      string `json:"id"`
	Err     string `json:"err"`
	DelayUS int64  `json:"delay_us"`
	Dead    bool   `json:"dead"`
}

// EventMarkFailed implements outboxdriver.Driver.
func (d *Driver) EventMarkFailed(ctx context.Context, p *outboxdriver.EventMarkFailedParams) (int64, error) {
	if len(p.Failures) == 0 {
		return 0, nil
	}
	fs := make([]failedJSON, len(p.Failures))
	for i, f := range p.Failures {
		fs[i] = failedJSON{ID: f.ID, Err: strings.ToValidUTF8(f.Error, "\uFFFD"), DelayUS: f.Delay.Microseconds(), Dead: f.Dead}
	}
	b, err := json.Marshal(fs)
	if err != nil {
		return 0, err
	}
	return d.execImmediate(ctx, d.queries.markFailed, string(b), p.RelayID)
}

// EventRelease implements outboxdriver.Driver.
func (d *Driver) EventRelease(ctx context.Context, p *outboxdriver.EventReleaseParams) (int64, error) {
	if len(p.IDs) == 0 {
		return 0, nil
	}
	return d.execImmediate(ctx, d.queries.release, idList(p.IDs), p.RelayID)
}

// EventRetry implements outboxdriver.Driver.
func (d *Driver) EventRetry(ctx context.Context, p *outboxdriver.EventRetryParams) (int64, error) {
	if p.AllDead {
		return d.execImmediate(ctx, d.queries.retryDead, p.Type)
	}
	if len(p.IDs) == 0 {
		return 0, nil
	}
	return d.execImmediate(ctx, d.queries.retryIDs, idList(p.IDs), p.Resend)
}

// EventPurge implements outboxdriver.Driver.
func (d *Driver) EventPurge(ctx context.Context, p *outboxdriver.EventPurgeParams) (int64, error) {
	return d.execImmediate(ctx, d.queries.purge, p.Before.UnixMicro(), p.Limit)
}

// EventStats implements outboxdriver.Driver.
func (d *Driver) EventStats(ctx context.Context, _ *outboxdriver.EventStatsParams) (*outboxdriver.EventStats, error) {
	s := &outboxdriver.EventStats{}
	var oldest sql.NullInt64
	var nowUS int64
	err := d.db.QueryRowContext(ctx, d.queries.stats).Scan(&s.Pending, &s.Dead, &oldest, &s.DeliveredLastMinute, &nowUS)
	if err != nil {
		return nil, interpretError(err)
	}
	if oldest.Valid {
		s.OldestPending = fromMicros(oldest.Int64)
	}
	s.Now = fromMicros(nowUS)
	return s, nil
}

type scanner interface{ Scan(dest ...any) error }

func scanRow(sc scanner) (*outboxdriver.EventRow, error) {
	r := &outboxdriver.EventRow{}
	var status string
	var created, next int64
	var delivered, lockedUntil sql.NullInt64
	if err := sc.Scan(&r.Seq, &r.ID, &r.Type, &r.Topic, &r.Key, &r.Payload, &r.Headers, &status, &r.Attempts,
		&r.LastError, &created, &next, &delivered, &r.LockedBy, &lockedUntil); err != nil {
		return nil, interpretError(err)
	}
	r.Status = outboxdriver.Status(status)
	r.CreatedAt, r.NextAttemptAt = fromMicros(created), fromMicros(next)
	if delivered.Valid {
		t := fromMicros(delivered.Int64)
		r.DeliveredAt = &t
	}
	if lockedUntil.Valid {
		t := fromMicros(lockedUntil.Int64)
		r.LockedUntil = &t
	}
	if r.Payload == nil {
		r.Payload = []byte{}
	}
	return r, nil
}

// EventGet implements outboxdriver.Driver.
func (d *Driver) EventGet(ctx context.Context, p *outboxdriver.EventGetParams) (*outboxdriver.EventRow, error) {
	return scanRow(d.db.QueryRowContext(ctx, d.queries.get, p.ID))
}

// EventList implements outboxdriver.Driver.
func (d *Driver) EventList(ctx context.Context, p *outboxdriver.EventListParams) ([]*outboxdriver.EventRow, error) {
	rows, err := d.db.QueryContext(ctx, d.queries.list, p.AfterSeq, string(p.Status), p.Type, p.Key,
		nullMicros(p.Since), nullMicros(p.Until), p.Limit, p.Topic, p.LastError)
	if err != nil {
		return nil, interpretError(err)
	}
	defer rows.Close()
	var out []*outboxdriver.EventRow
	for rows.Next() {
		r, err := scanRow(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, interpretError(rows.Err())
}

func nullMicros(t time.Time) sql.NullInt64 {
	return sql.NullInt64{Int64: t.UnixMicro(), Valid: !t.IsZero()}
}

//go:embed migrations/*.sql
var migrationFS embed.FS

// migrations renders the embedded, versioned migration files for this table.
func (d *Driver) migrations() ([]outboxdriver.Migration, error) {
	data := struct{ Table, AckTable string }{Table: d.table, AckTable: d.ackTable}
	funcs := template.FuncMap{
		"idx": func(suffix string) string { return quote(d.cfg.Table + "_" + suffix + "_idx") },
	}
	migs, err := outboxdriver.RenderMigrations(migrationFS, "migrations", data, funcs)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	return migs, nil
}

func (d *Driver) versionsTable() string { return quote(d.cfg.Table + "_migrations") }

func (d *Driver) appliedVersions(ctx context.Context, q outboxdriver.Querier) (map[int]bool, error) {
	applied, err := outboxdriver.AppliedVersions(ctx, q, d.versionsTable())
	return applied, interpretError(err)
}

// MigrateUp implements outboxdriver.Driver. Every pending migration runs in
// one BEGIN IMMEDIATE transaction, so concurrent callers (goroutines or
// processes) apply each migration once.
func (d *Driver) MigrateUp(ctx context.Context, _ *outboxdriver.MigrateUpParams) error {
	migs, err := d.migrations()
	if err != nil {
		return err
	}
	err = d.immediate(ctx, func(conn *sql.Conn) error {
		if _, err := conn.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+d.versionsTable()+
			" (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)"); err != nil {
			return fmt.Errorf("create versions table: %w", err)
		}
		applied, err := d.appliedVersions(ctx, conn)
		if err != nil {
			return err
		}
		for _, m := range migs {
			if applied[m.Version] {
				continue
			}
			if _, err := conn.ExecContext(ctx, m.SQL); err != nil {
				return fmt.Errorf("migration %d: %w", m.Version, err)
			}
			if _, err := conn.ExecContext(ctx, "INSERT INTO "+d.versionsTable()+" (version, applied_at) VALUES (?1, "+now+")", m.Version); err != nil {
				return fmt.Errorf("migration %d: record version: %w", m.Version, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
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
