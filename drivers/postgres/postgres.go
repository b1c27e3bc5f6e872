// Package postgres is the PostgreSQL driver of outboxkit. It works through
// database/sql with github.com/lib/pq (imported and registered as "postgres")
// or with pgx's stdlib driver ("pgx"), on PostgreSQL 12 or newer.
//
// The driver has one claim protocol, held claims (outboxdriver.HeldClaimer):
// a batch's rows stay locked (FOR UPDATE SKIP LOCKED) and its keys locked
// (transaction-scoped advisory locks) in one open transaction while the
// batch is published, and its outcome is written in that transaction.
// Application INSERTs never wait for a relay, rows committed out of id order
// are never skipped (there is no offset), and per-key order holds with any
// number of relays. Its statements are the embedded queries/*.sql files,
// rendered once for the table in New.
package postgres

import (
	"cmp"
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"text/template"
	"time"

	_ "github.com/lib/pq" // registers the "postgres" database/sql driver

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// DefaultTable is the default Config.Table.
const DefaultTable = "outbox"

// Config configures the PostgreSQL driver.
type Config struct {
	// Schema holds the outbox table. Empty means the connection's search_path
	// (usually "public"). It must match ^[A-Za-z_][A-Za-z0-9_]{0,62}$; it is
	// created by migrations if missing.
	Schema string

	// Table is the outbox table name. Empty means "outbox". It must match
	// ^[A-Za-z_][A-Za-z0-9_]{0,47}$ (index names append a suffix and
	// PostgreSQL truncates identifiers at 63 bytes).
	Table string

	// NotifyDSN turns on LISTEN/NOTIFY wake-ups: Insert sends a NOTIFY in
	// the writer's transaction (PostgreSQL delivers it only on commit, in
	// the same round trip as the INSERT), and relays LISTEN on a dedicated
	// connection opened with this DSN (lib/pq's listener, which reconnects
	// by itself), so they claim within milliseconds of a commit instead of
	// at their next poll. Set it in writers and relays alike. Empty means
	// no notifications: relays poll. Note that PostgreSQL serializes the
	// commits of transactions that sent a NOTIFY, which caps the commit rate
	// of very busy writers.
	NotifyDSN string

	// DeleteDelivered makes the relay delete each event once the broker
	// acknowledged it, in the statement that would otherwise mark it
	// delivered. A delete writes no new row version and no index entry,
	// where the mark writes both: about 15 times less database work per
	// event (see docs/performance.md). The price is the delivered history:
	// List and Get find no delivered events, Stats' DeliveredLastMinute
	// stays 0 (the relay's metrics count deliveries instead), Purge has
	// nothing to do, and an Insert repeating the id of an event already
	// delivered is published again instead of ignored (a duplicate, which
	// consumers drop by event id like any other). Pending, failed and dead
	// events are kept as always. Set it on the relays' driver; writers and
	// admin tools need not know.
	DeleteDelivered bool
}

// Driver implements outboxdriver.Driver for PostgreSQL.
type Driver struct {
	db       *sql.DB
	cfg      Config
	table    string // quoted, qualified
	ackTable string // quoted, qualified <table>_acks
	migLock  int64  // advisory lock serializing migrations on this table
	queries  queries
	insertN1 string
	channel  string // NOTIFY channel of this table; empty without NotifyDSN
}

var _ outboxdriver.Driver = (*Driver)(nil)

// New returns a driver using db. It checks the configuration only; it does
// not connect (see Ping) nor create the table (see MigrateUp).
func New(db *sql.DB, cfg Config) (*Driver, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: postgres: db must not be nil", outboxdriver.ErrInvalidConfig)
	}
	cfg.Table = cmp.Or(cfg.Table, DefaultTable)
	if err := outboxdriver.ValidateIdentifier("postgres.Config.Table", cfg.Table); err != nil {
		return nil, err
	}
	if len(cfg.Table) > 48 {
		return nil, fmt.Errorf("%w: postgres.Config.Table %q is longer than 48 bytes", outboxdriver.ErrInvalidConfig, cfg.Table)
	}
	if cfg.Schema != "" {
		if err := outboxdriver.ValidateIdentifier("postgres.Config.Schema", cfg.Schema); err != nil {
			return nil, err
		}
	}
	d := &Driver{db: db, cfg: cfg, table: quote(cfg.Table)}
	if cfg.Schema != "" {
		d.table = quote(cfg.Schema) + "." + quote(cfg.Table)
	}
	d.ackTable = quote(cfg.Table + "_acks")
	if cfg.Schema != "" {
		d.ackTable = quote(cfg.Schema) + "." + d.ackTable
	}
	d.migLock = hashKey("outboxkit:migrate:" + d.table)
	// The key space keeps the per-key advisory locks of different outbox
	// tables apart (the first half of the two-int lock keys).
	q, err := newQueries(queryData{Table: d.table, AckTable: d.ackTable, KeySpace: int32(hashKey("outboxkit:claim:" + d.table)),
		DeleteDelivered: cfg.DeleteDelivered})
	if err != nil {
		return nil, err
	}
	d.queries = q
	if cfg.NotifyDSN != "" {
		d.channel = fmt.Sprintf("outboxkit_%016x", uint64(hashKey("outboxkit:notify:"+d.table)))
	}
	d.insertN1 = d.insertSQL(1)
	return d, nil
}

// Ping checks that the database is reachable and the table migrated,
// returning an error that says which is wrong.
func (d *Driver) Ping(ctx context.Context) error {
	if err := d.db.PingContext(ctx); err != nil {
		return fmt.Errorf("postgres: cannot reach database: %w", err)
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
func (d *Driver) Name() string { return "postgres" }

// Table implements outboxdriver.Driver.
func (d *Driver) Table() string { return d.table }

func quote(ident string) string { return `"` + ident + `"` }

func hashKey(s string) int64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return int64(h.Sum64())
}

// interpretError is the one place PostgreSQL errors become outbox errors. It
// reads the SQLSTATE through the SQLState() method both lib/pq and pgx
// errors have.
func interpretError(err error) error {
	if err == nil {
		return nil
	}
	var st interface{ SQLState() string }
	if errors.As(err, &st) {
		switch st.SQLState() {
		case "42P01": // undefined_table
			return fmt.Errorf("%w: %w", outboxdriver.ErrNotMigrated, err)
		case "53200": // out_of_memory: the shared lock table is full
			return fmt.Errorf("postgres: out of lock slots (a held claim takes one advisory lock per key of the batch): "+
				"lower RelayConfig.BatchSize or raise max_locks_per_transaction: %w", err)
		}
	}
	if errors.Is(err, sql.ErrNoRows) {
		return outboxdriver.ErrNotFound
	}
	return err
}

//go:embed queries/*.sql
var queryFS embed.FS

// queryData is what the queries/*.sql templates are rendered with.
type queryData struct {
	Table           string // validated, quoted, optionally schema-qualified
	AckTable        string // the table's <table>_acks, quoted and qualified alike
	KeySpace        int32  // advisory lock key space of the table's keys
	DeleteDelivered bool   // Config.DeleteDelivered
}

// queries are the driver's statements, one per queries/*.sql file.
type queries struct {
	claimSession, claimHeld, claimGaps, markDelivered, markFailed string
	retryIDs, retryDead, purge, stats, get, list                  string
	ackAnswer, ackExists, ackGet, ackList, ackDue                 string
	ackMarkResent, ackMarkUnacknowledged, ackRearm, ackStats      string
	ackPurge                                                      string
	streamDelivered, streamFailed, streamHeld, streamInplay       string
	streamInplaySeqs                                              string
}

// newQueries renders every statement for one table, once.
func newQueries(data queryData) (queries, error) {
	rendered, err := outboxdriver.RenderQueries(queryFS, "queries", data, nil)
	if err != nil {
		return queries{}, fmt.Errorf("postgres: %w", err)
	}
	var q queries
	err = outboxdriver.BindQueries(rendered, map[string]*string{
		"claim_session": &q.claimSession, "claim_held": &q.claimHeld, "claim_gaps": &q.claimGaps,
		"mark_delivered": &q.markDelivered, "mark_failed": &q.markFailed,
		"retry_ids": &q.retryIDs, "retry_dead": &q.retryDead, "purge": &q.purge,
		"stats": &q.stats, "get": &q.get, "list": &q.list,
		"ack_answer": &q.ackAnswer, "ack_exists": &q.ackExists, "ack_get": &q.ackGet, "ack_list": &q.ackList,
		"ack_due": &q.ackDue, "ack_mark_resent": &q.ackMarkResent, "ack_mark_unacknowledged": &q.ackMarkUnacknowledged,
		"ack_rearm": &q.ackRearm, "ack_stats": &q.ackStats, "ack_purge": &q.ackPurge,
		"stream_delivered": &q.streamDelivered, "stream_failed": &q.streamFailed,
		"stream_held": &q.streamHeld, "stream_inplay": &q.streamInplay,
		"stream_inplay_seqs": &q.streamInplaySeqs,
	})
	if err != nil {
		return queries{}, fmt.Errorf("postgres: %w", err)
	}
	return q, nil
}

// maxInsertRows keeps one INSERT under PostgreSQL's 65535 bind parameters.
const maxInsertRows = 1000

// insertSQL renders the INSERT of n events; with notifications on, the same
// statement also queues the NOTIFY (its channel is the last parameter) and
// returns how many rows it inserted (no row when none).
func (d *Driver) insertSQL(n int) string {
	var b strings.Builder
	if d.channel != "" {
		b.WriteString("WITH ins AS (")
	}
	b.WriteString("INSERT INTO " + d.table + " (id, type, topic, key, payload, headers, created_at) VALUES ")
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		p := i * 7
		fmt.Fprintf(&b, "($%d,$%d,$%d,$%d,$%d,$%d::jsonb,$%d)", p+1, p+2, p+3, p+4, p+5, p+6, p+7)
	}
	b.WriteString(" ON CONFLICT (id) DO NOTHING")
	if d.channel != "" {
		fmt.Fprintf(&b, " RETURNING 1) SELECT (SELECT count(*) FROM ins), pg_notify($%d, '')::text WHERE EXISTS (SELECT 1 FROM ins)", n*7+1)
	}
	return b.String()
}

// EventInsert implements outboxdriver.Driver. An event whose id is already
// stored is skipped by ON CONFLICT DO NOTHING; only when the INSERT reports
// fewer rows than it was given does a second statement read the stored
// events of the chunk to tell an idempotent retry from a reused id
// (ErrDuplicateEvent), so the common path costs one statement.
func (d *Driver) EventInsert(ctx context.Context, p *outboxdriver.EventInsertParams) error {
	for start := 0; start < len(p.Events); start += maxInsertRows {
		chunk := p.Events[start:min(start+maxInsertRows, len(p.Events))]
		query := d.insertN1
		if len(chunk) > 1 {
			query = d.insertSQL(len(chunk))
		}
		args := make([]any, 0, len(chunk)*7+1)
		for _, e := range chunk {
			args = append(args, e.ID, e.Type, e.Topic, e.Key, e.Payload, string(e.Headers), e.CreatedAt)
		}
		var inserted int64
		if d.channel != "" {
			args = append(args, d.channel)
			var notified string
			err := p.Tx.QueryRowContext(ctx, query, args...).Scan(&inserted, &notified)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return interpretError(err)
			}
		} else {
			res, err := p.Tx.ExecContext(ctx, query, args...)
			if err != nil {
				return interpretError(err)
			}
			if inserted, err = res.RowsAffected(); err != nil {
				return interpretError(err)
			}
		}
		if inserted < int64(len(chunk)) {
			if err := d.checkDuplicates(ctx, p.Tx, chunk, start); err != nil {
				return err
			}
		}
		if err := d.insertAcks(ctx, p.Tx, chunk); err != nil {
			return err
		}
	}
	return nil
}

// checkDuplicates compares the stored events with the ids of chunk (read in
// the caller's transaction) with what chunk asked for; first is the index of
// chunk[0] in the Insert call.
func (d *Driver) checkDuplicates(ctx context.Context, tx *sql.Tx, chunk []outboxdriver.InsertEvent, first int) error {
	ids := make([]string, len(chunk))
	for i, e := range chunk {
		ids[i] = e.ID
	}
	return interpretError(outboxdriver.CheckDuplicates(ctx, tx, "SELECT id::text, type, topic, key, payload FROM "+d.table+
		" WHERE id = ANY(string_to_array($1, ',')::uuid[])", []any{strings.Join(ids, ",")}, chunk, first))
}

func (d *Driver) exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := d.db.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, interpretError(err)
	}
	return res.RowsAffected()
}

func idList(ids []string) string { return strings.Join(ids, ",") }

// EventRetry implements outboxdriver.Driver.
func (d *Driver) EventRetry(ctx context.Context, p *outboxdriver.EventRetryParams) (int64, error) {
	if p.AllDead {
		return d.exec(ctx, d.queries.retryDead, p.Type)
	}
	if len(p.IDs) == 0 {
		return 0, nil
	}
	return d.exec(ctx, d.queries.retryIDs, idList(p.IDs), p.Resend)
}

// EventPurge implements outboxdriver.Driver.
func (d *Driver) EventPurge(ctx context.Context, p *outboxdriver.EventPurgeParams) (int64, error) {
	return d.exec(ctx, d.queries.purge, p.Before, p.Limit)
}

// EventStats implements outboxdriver.Driver.
func (d *Driver) EventStats(ctx context.Context, _ *outboxdriver.EventStatsParams) (*outboxdriver.EventStats, error) {
	s, err := outboxdriver.ScanEventStats(d.db.QueryRowContext(ctx, d.queries.stats))
	return s, interpretError(err)
}

func scanRow(sc outboxdriver.Scanner) (*outboxdriver.EventRow, error) {
	r, err := outboxdriver.ScanEventRow(sc)
	return r, interpretError(err)
}

// EventGet implements outboxdriver.Driver.
func (d *Driver) EventGet(ctx context.Context, p *outboxdriver.EventGetParams) (*outboxdriver.EventRow, error) {
	return scanRow(d.db.QueryRowContext(ctx, d.queries.get, p.ID))
}

// EventList implements outboxdriver.Driver.
func (d *Driver) EventList(ctx context.Context, p *outboxdriver.EventListParams) ([]*outboxdriver.EventRow, error) {
	rows, err := d.db.QueryContext(ctx, d.queries.list, p.AfterSeq, string(p.Status), p.Type, p.Key,
		nullTime(p.Since), nullTime(p.Until), p.Limit, p.Topic, p.LastError)
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

func nullTime(t time.Time) sql.NullTime { return sql.NullTime{Time: t, Valid: !t.IsZero()} }

//go:embed migrations/*.sql
var migrationFS embed.FS

// migrations renders the embedded, versioned migration files for this table.
func (d *Driver) migrations() ([]outboxdriver.Migration, error) {
	data := struct{ Table, AckTable string }{Table: d.table, AckTable: d.ackTable}
	funcs := template.FuncMap{
		"idx":     func(suffix string) string { return quote(d.cfg.Table + "_" + suffix + "_idx") },
		"pub":     func() string { return quote(d.Publication()) },
		"pubname": func() string { return d.Publication() },
		"state":   func() string { return d.stateTable() },
	}
	migs, err := outboxdriver.RenderMigrations(migrationFS, "migrations", data, funcs)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return migs, nil
}

func (d *Driver) versionsTable() string {
	t := quote(d.cfg.Table + "_migrations")
	if d.cfg.Schema != "" {
		t = quote(d.cfg.Schema) + "." + t
	}
	return t
}

func (d *Driver) appliedVersions(ctx context.Context, q outboxdriver.Querier) (map[int]bool, error) {
	applied, err := outboxdriver.AppliedVersions(ctx, q, d.versionsTable())
	return applied, interpretError(err)
}

// MigrateUp implements outboxdriver.Driver. Every pending migration runs in
// one transaction under an advisory lock, so concurrent callers are safe.
func (d *Driver) MigrateUp(ctx context.Context, _ *outboxdriver.MigrateUpParams) error {
	migs, err := d.migrations()
	if err != nil {
		return err
	}
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", interpretError(err))
	}
	defer tx.Rollback() //nolint:errcheck
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", d.migLock); err != nil {
		return fmt.Errorf("postgres: migrate: %w", interpretError(err))
	}
	if d.cfg.Schema != "" {
		if _, err := tx.ExecContext(ctx, "CREATE SCHEMA IF NOT EXISTS "+quote(d.cfg.Schema)); err != nil {
			return fmt.Errorf("postgres: migrate: create schema: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+d.versionsTable()+
		" (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"); err != nil {
		return fmt.Errorf("postgres: migrate: create versions table: %w", err)
	}
	applied, err := d.appliedVersions(ctx, tx)
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	for _, m := range migs {
		if applied[m.Version] {
			continue
		}
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			return fmt.Errorf("postgres: migration %d: %w", m.Version, err)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO "+d.versionsTable()+" (version) VALUES ($1)", m.Version); err != nil {
			return fmt.Errorf("postgres: migration %d: record version: %w", m.Version, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("postgres: migrate: %w", interpretError(err))
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
