// Package postgres is the PostgreSQL driver of outboxkit. It works through
// database/sql with github.com/lib/pq (imported and registered as "postgres")
// or with pgx's stdlib driver ("pgx"), on PostgreSQL 12 or newer.
//
// Claims lease rows with FOR UPDATE SKIP LOCKED under a transaction-scoped
// advisory lock that only relays take, so application INSERTs never wait for
// a relay, rows committed out of id order are never skipped (there is no
// offset), and per-key order holds with any number of relays.
package postgres

import (
	"cmp"
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"sort"
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
	lockKey  int64  // advisory lock serializing claims on this table
	migLock  int64  // advisory lock serializing migrations on this table
	queries  queries
	held     heldQueries
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
	d.lockKey = hashKey("outboxkit:claim:" + d.table)
	d.migLock = hashKey("outboxkit:migrate:" + d.table)
	d.queries = newQueries(d.table, cfg.DeleteDelivered)
	d.held = newHeldQueries(d.table, int32(d.lockKey), cfg.DeleteDelivered)
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

const columns = `seq, id, type, topic, key, payload, headers, status, attempts, coalesce(last_error, ''),
	created_at, next_attempt_at, delivered_at, coalesce(locked_by, ''), locked_until`

type queries struct {
	claim, unlease, extend, markDelivered, markFailed, release string
	retryIDs, retryDead, purge, stats, get, list               string
}

// readyEvents is the WHERE ... LIMIT $1 shared by both claims (alias o):
// pending events whose retry time has come, not leased, and whose key is
// free ({KEY_FREE}, from keyFree or keyLocked), in seq order.
const readyEvents = `	WHERE o.status = 'pending'{FROM}
	  AND o.next_attempt_at <= statement_timestamp()
	  AND (o.locked_until IS NULL OR o.locked_until < statement_timestamp())
	  AND {KEY_FREE}
	ORDER BY o.seq
	LIMIT $1`

// keyBlocked finds an earlier event of o's key that is leased or in
// backoff; it reads the partial "inplay" index.
const keyBlocked = `SELECT 1 FROM {T} p
		WHERE p.status = 'pending' AND (p.locked_by IS NOT NULL OR p.attempts > 0)
		  AND p.key = o.key AND p.seq < o.seq
		  AND (p.next_attempt_at > statement_timestamp() OR p.locked_until >= statement_timestamp())`

// keyFree is the leased claim's {KEY_FREE}: no earlier event of the key
// holds it back.
const keyFree = `(o.key = '' OR NOT EXISTS (
		` + keyBlocked + `))`

// keyLocked is the held claim's {KEY_FREE}: as keyFree, and then this
// transaction takes the key's advisory lock ({KS} is the table's lock key
// space). The CASE fixes the order: the lock is tried only on a row that
// is otherwise ready.
const keyLocked = `CASE WHEN o.key = '' THEN true
		WHEN EXISTS (
		` + keyBlocked + `) THEN false
		ELSE pg_try_advisory_xact_lock({KS}, hashtext(o.key)) END`

// readyQuery renders readyEvents for table t with keyCond as {KEY_FREE}
// and from as {FROM} (a further condition, or nothing).
func readyQuery(t, keyCond, from string) string {
	s := strings.NewReplacer("{KEY_FREE}", keyCond, "{FROM}", from).Replace(readyEvents)
	return strings.ReplaceAll(s, "{T}", t)
}

// markDelivered is the head of a mark-delivered statement: update (the
// given SET) or, with Config.DeleteDelivered, delete.
func markDelivered(deleteDelivered bool, update string) string {
	if deleteDelivered {
		return "DELETE FROM {T}"
	}
	return update
}

// newQueries renders every statement for one table. The only substitution is
// the validated, quoted table name; values are always bind parameters.
func newQueries(t string, deleteDelivered bool) queries {
	r := strings.NewReplacer("{READY}", readyQuery(t, keyFree, ""), "{T}", t)
	return queries{
		claim: r.Replace(`
WITH c AS (
	SELECT o.seq FROM {T} o
{READY}
	FOR UPDATE SKIP LOCKED
)
UPDATE {T} t SET locked_by = $2, locked_until = statement_timestamp() + $3::bigint * interval '1 millisecond'
FROM c WHERE t.seq = c.seq
RETURNING t.seq, t.id, t.type, t.topic, t.key, t.payload, t.headers, t.attempts, t.created_at`),
		unlease: r.Replace(`UPDATE {T} SET locked_by = NULL, locked_until = NULL
WHERE seq = ANY(string_to_array($1, ',')::bigint[])`),
		extend: r.Replace(`UPDATE {T} SET locked_until = statement_timestamp() + $3::bigint * interval '1 millisecond'
WHERE id = ANY(string_to_array($1, ',')::uuid[]) AND locked_by = $2 AND status = 'pending'`),
		markDelivered: r.Replace(markDelivered(deleteDelivered, `UPDATE {T} SET status = 'delivered', delivered_at = statement_timestamp(),
	attempts = attempts + 1, locked_by = NULL, locked_until = NULL`) + `
WHERE id = ANY(string_to_array($1, ',')::uuid[]) AND locked_by = $2 AND status = 'pending'`),
		markFailed: r.Replace(`UPDATE {T} t SET attempts = t.attempts + 1, last_error = f.err,
	status = CASE WHEN f.dead THEN 'dead' ELSE 'pending' END,
	next_attempt_at = CASE WHEN f.dead THEN t.next_attempt_at
		ELSE statement_timestamp() + f.delay_ms * interval '1 millisecond' END,
	locked_by = NULL, locked_until = NULL
FROM json_to_recordset($1::json) AS f(id uuid, err text, delay_ms bigint, dead boolean)
WHERE t.id = f.id AND t.locked_by = $2 AND t.status = 'pending'`),
		release: r.Replace(`UPDATE {T} SET locked_by = NULL, locked_until = NULL
WHERE id = ANY(string_to_array($1, ',')::uuid[]) AND locked_by = $2 AND status = 'pending'`),
		retryIDs: r.Replace(`UPDATE {T} SET status = 'pending', attempts = 0, next_attempt_at = statement_timestamp(),
	locked_by = NULL, locked_until = NULL
WHERE id = ANY(string_to_array($1, ',')::uuid[])
  AND (status <> 'pending' OR locked_until IS NULL OR locked_until < statement_timestamp())`),
		retryDead: r.Replace(`UPDATE {T} SET status = 'pending', attempts = 0, next_attempt_at = statement_timestamp(),
	locked_by = NULL, locked_until = NULL
WHERE status = 'dead' AND ($1 = '' OR type = $1)`),
		purge: r.Replace(`DELETE FROM {T} WHERE seq IN (
	SELECT seq FROM {T} WHERE status = 'delivered' AND delivered_at < $1 ORDER BY delivered_at LIMIT $2)`),
		stats: r.Replace(`SELECT
	(SELECT count(*) FROM {T} WHERE status = 'pending'),
	(SELECT count(*) FROM {T} WHERE status = 'dead'),
	(SELECT created_at FROM {T} WHERE status = 'pending' ORDER BY seq LIMIT 1),
	(SELECT count(*) FROM {T} WHERE status = 'delivered' AND delivered_at > statement_timestamp() - interval '1 minute'),
	statement_timestamp()`),
		get: r.Replace(`SELECT ` + columns + ` FROM {T} WHERE id = $1`),
		list: r.Replace(`SELECT ` + columns + ` FROM {T}
WHERE seq > $1
  AND ($2 = '' OR status = $2)
  AND ($3 = '' OR type = $3)
  AND ($4 = '' OR key = $4)
  AND ($5::timestamptz IS NULL OR created_at >= $5)
  AND ($6::timestamptz IS NULL OR created_at < $6)
ORDER BY seq LIMIT $7`),
	}
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

// EventClaimBatch implements outboxdriver.Driver.
func (d *Driver) EventClaimBatch(ctx context.Context, p *outboxdriver.EventClaimBatchParams) ([]*outboxdriver.EventRow, error) {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, interpretError(err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	// Only relays take this lock, and only for the claim statement: claims
	// serialize (so two relays never split one key's events) while writers
	// never wait.
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", d.lockKey); err != nil {
		return nil, interpretError(err)
	}
	if _, err := tx.ExecContext(ctx, claimSession); err != nil {
		return nil, interpretError(err)
	}
	rows, err := tx.QueryContext(ctx, d.queries.claim, p.Limit, p.RelayID, p.Lease.Milliseconds())
	if err != nil {
		return nil, interpretError(err)
	}
	var out []*outboxdriver.EventRow
	for rows.Next() {
		r := &outboxdriver.EventRow{Status: outboxdriver.StatusPending, LockedBy: p.RelayID}
		if err := rows.Scan(&r.Seq, &r.ID, &r.Type, &r.Topic, &r.Key, &r.Payload, &r.Headers, &r.Attempts, &r.CreatedAt); err != nil {
			rows.Close()
			return nil, interpretError(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, interpretError(err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	// A row someone else has locked (SKIP LOCKED) can sit before the ones
	// claimed for its key: give those keys back (see keysWithGaps).
	gaps, err := d.keysWithGaps(ctx, tx, out)
	if err != nil {
		return nil, err
	}
	if len(gaps) > 0 {
		var dropped []*outboxdriver.EventRow
		out, dropped = withoutKeys(out, gaps)
		seqs := make([]string, len(dropped))
		for i, r := range dropped {
			seqs[i] = fmt.Sprint(r.Seq)
		}
		if _, err := tx.ExecContext(ctx, d.queries.unlease, strings.Join(seqs, ",")); err != nil {
			return nil, interpretError(err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, interpretError(err)
	}
	return out, nil
}

func (d *Driver) exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := d.db.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, interpretError(err)
	}
	return res.RowsAffected()
}

func idList(ids []string) string { return strings.Join(ids, ",") }

// EventExtendLeases implements outboxdriver.Driver.
func (d *Driver) EventExtendLeases(ctx context.Context, p *outboxdriver.EventExtendLeasesParams) (int64, error) {
	if len(p.IDs) == 0 {
		return 0, nil
	}
	return d.exec(ctx, d.queries.extend, idList(p.IDs), p.RelayID, p.Lease.Milliseconds())
}

// EventMarkDelivered implements outboxdriver.Driver.
func (d *Driver) EventMarkDelivered(ctx context.Context, p *outboxdriver.EventMarkDeliveredParams) (int64, error) {
	if len(p.IDs) == 0 {
		return 0, nil
	}
	return d.exec(ctx, d.queries.markDelivered, idList(p.IDs), p.RelayID)
}

type failedJSON struct {
	ID      string `json:"id"`
	Err     string `json:"err"`
	DelayMS int64  `json:"delay_ms"`
	Dead    bool   `json:"dead"`
}

// EventMarkFailed implements outboxdriver.Driver.
func (d *Driver) EventMarkFailed(ctx context.Context, p *outboxdriver.EventMarkFailedParams) (int64, error) {
	if len(p.Failures) == 0 {
		return 0, nil
	}
	fs := make([]failedJSON, len(p.Failures))
	for i, f := range p.Failures {
		fs[i] = failedJSON{ID: f.ID, Err: strings.ReplaceAll(f.Error, "\x00", ""), DelayMS: f.Delay.Milliseconds(), Dead: f.Dead}
	}
	b, err := json.Marshal(fs)
	if err != nil {
		return 0, err
	}
	return d.exec(ctx, d.queries.markFailed, string(b), p.RelayID)
}

// EventRelease implements outboxdriver.Driver.
func (d *Driver) EventRelease(ctx context.Context, p *outboxdriver.EventReleaseParams) (int64, error) {
	if len(p.IDs) == 0 {
		return 0, nil
	}
	return d.exec(ctx, d.queries.release, idList(p.IDs), p.RelayID)
}

// EventRetry implements outboxdriver.Driver.
func (d *Driver) EventRetry(ctx context.Context, p *outboxdriver.EventRetryParams) (int64, error) {
	if p.AllDead {
		return d.exec(ctx, d.queries.retryDead, p.Type)
	}
	if len(p.IDs) == 0 {
		return 0, nil
	}
	return d.exec(ctx, d.queries.retryIDs, idList(p.IDs))
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
		nullTime(p.Since), nullTime(p.Until), p.Limit)
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
	data := struct{ Table string }{Table: d.table}
	funcs := template.FuncMap{
		"idx": func(suffix string) string { return quote(d.cfg.Table + "_" + suffix + "_idx") },
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
