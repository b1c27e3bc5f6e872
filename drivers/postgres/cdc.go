package postgres

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// CDCConfig configures the change stream of a CDC driver (NewCDC).
type CDCConfig struct {
	// ConnString is how the relay's replication connection reaches the
	// database of the outbox table: a libpq URL or key=value string (the
	// same DSN as the *sql.DB's, when that uses lib/pq or pgx). The role
	// needs the REPLICATION attribute (or rds_replication on Amazon RDS).
	// Required.
	ConnString string

	// Slot names the logical replication slot. Relays that share a slot
	// share one stream: one streams, the others wait as hot standbys and
	// take over when its connection ends. Empty means the table name in
	// lower case followed by "_slot" (see SlotName). It must match
	// ^[a-z0-9_]{1,63}$.
	Slot string

	// StatusInterval is how often the stream reports its position to the
	// database when nothing else makes it (idle), so that the slot does
	// not retain WAL and the server does not time the connection out
	// (wal_sender_timeout, 60s by default). Zero means 10s; it must lie
	// between 100ms and 30s.
	StatusInterval time.Duration
}

// CDC is the PostgreSQL driver in change-data-capture mode: everything
// Driver does (inserts, administration), plus outboxdriver.Streamer, so a
// relay built on it reads new events from a logical replication slot
// (pgoutput, over the publication that migration 4 creates) instead of
// claiming them from the table. It needs wal_level=logical.
//
// Fates are written to the rows as with polling: failed attempts and dead
// events on their row; delivered events marked delivered (one UPDATE per
// write of the relay's recorder, which takes every outcome waiting), or
// deleted with Config.DeleteDelivered. Retry (Outbox.Retry, RetryDead,
// `outbox retry`) marks rows locked_by = 'retry'; the stream sees that
// update and sends them again. Other updates of the table are ignored.
type CDC struct {
	*Driver
	cdc  CDCConfig
	conn *pgconn.Config
	// streams holds the open streams (keys), for endStreams.
	streams sync.Map
}

var _ outboxdriver.Streamer = (*CDC)(nil)

var slotRe = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// NewCDC returns a CDC driver using db for inserts, outcomes and
// administration, and cdc.ConnString for the replication connection. It
// checks the configuration only; it does not connect.
func NewCDC(db *sql.DB, cfg Config, cdc CDCConfig) (*CDC, error) {
	d, err := New(db, cfg)
	if err != nil {
		return nil, err
	}
	if cdc.ConnString == "" {
		return nil, fmt.Errorf("%w: postgres.CDCConfig.ConnString must not be empty (the replication connection's DSN)", outboxdriver.ErrInvalidConfig)
	}
	conn, err := pgconn.ParseConfig(cdc.ConnString)
	if err != nil {
		return nil, fmt.Errorf("%w: postgres.CDCConfig.ConnString: %v", outboxdriver.ErrInvalidConfig, err)
	}
	conn.RuntimeParams["replication"] = "database"
	conn.RuntimeParams["DateStyle"] = "ISO"
	conn.RuntimeParams["TimeZone"] = "UTC"
	cdc.Slot = cmp.Or(cdc.Slot, SlotName(cfg.Schema, d.cfg.Table))
	if !slotRe.MatchString(cdc.Slot) {
		return nil, fmt.Errorf("%w: postgres.CDCConfig.Slot %q must match ^[a-z0-9_]{1,63}$", outboxdriver.ErrInvalidConfig, cdc.Slot)
	}
	cdc.StatusInterval = cmp.Or(cdc.StatusInterval, 10*time.Second)
	if cdc.StatusInterval < 100*time.Millisecond || cdc.StatusInterval > 30*time.Second {
		return nil, fmt.Errorf("%w: postgres.CDCConfig.StatusInterval %s out of range 100ms..30s", outboxdriver.ErrInvalidConfig, cdc.StatusInterval)
	}
	return &CDC{Driver: d, cdc: cdc, conn: conn}, nil
}

// Slot returns the name of the driver's replication slot.
func (c *CDC) Slot() string { return c.cdc.Slot }

// SlotName returns the default CDCConfig.Slot of an outbox table: its name
// (schema_table with a schema) in lower case followed by "_slot", or a
// hashed name when that is longer than 63 bytes.
func SlotName(schema, table string) string {
	return shortName(strings.ToLower(cmp.Or(table, DefaultTable)), strings.ToLower(schema), "_slot")
}

// PublicationName returns the name of the publication migration 4 creates
// for an outbox table: its name (schema_table with a schema) followed by
// "_pub", or a hashed name when that is longer than 63 bytes.
func PublicationName(schema, table string) string {
	return shortName(cmp.Or(table, DefaultTable), schema, "_pub")
}

func shortName(table, schema, suffix string) string {
	name := table + suffix
	if schema != "" {
		name = schema + "_" + name
	}
	if len(name) <= 63 {
		return name
	}
	return fmt.Sprintf("outboxkit_%016x%s", uint64(hashKey(schema+"."+table)), suffix)
}

// Publication returns the name of the table's publication (PublicationName).
func (d *Driver) Publication() string { return PublicationName(d.cfg.Schema, d.cfg.Table) }

// stateTable is the quoted, qualified table of the CDC relay's state.
func (d *Driver) stateTable() string {
	t := quote(d.cfg.Table + "_cdc_state")
	if d.cfg.Schema != "" {
		t = quote(d.cfg.Schema) + "." + t
	}
	return t
}

// ErrWALLevel is wrapped by EventStreamOpen's error when the server's
// wal_level is not logical; it wraps outboxdriver.ErrStreamUnsupported.
var ErrWALLevel = fmt.Errorf("%w: postgres: wal_level must be logical", outboxdriver.ErrStreamUnsupported)

// checkServer returns why the server cannot stream the table, or nil.
func (c *CDC) checkServer(ctx context.Context) error {
	var level string
	if err := c.db.QueryRowContext(ctx, "SHOW wal_level").Scan(&level); err != nil {
		return interpretError(err)
	}
	if level != "logical" {
		return fmt.Errorf("%w (it is %q): run ALTER SYSTEM SET wal_level = logical and restart PostgreSQL; "+
			"on Amazon RDS/Aurora set rds.logical_replication = 1 in the DB parameter group and reboot; "+
			"on Google Cloud SQL set the flag cloudsql.logical_decoding = on; on Azure set wal_level = logical in the server parameters",
			ErrWALLevel, level)
	}
	var n int
	err := c.db.QueryRowContext(ctx, "SELECT 1 FROM pg_publication WHERE pubname = $1", c.Publication()).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: postgres: publication %q of table %s does not exist: run the migrations (outbox migrate up)",
			outboxdriver.ErrStreamUnsupported, c.Publication(), c.table)
	}
	return interpretError(err)
}

// SlotCreate creates the driver's replication slot if it does not exist
// and reports whether it did. A relay creates it itself when it starts;
// creating it beforehand makes the stream start at that point in the log.
func (c *CDC) SlotCreate(ctx context.Context) (bool, error) {
	if err := c.checkServer(ctx); err != nil {
		return false, err
	}
	conn, err := pgconn.ConnectConfig(ctx, c.conn)
	if err != nil {
		return false, fmt.Errorf("postgres: replication connection: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return c.createSlot(ctx, conn)
}

func (c *CDC) createSlot(ctx context.Context, conn *pgconn.PgConn) (bool, error) {
	var n int
	err := c.db.QueryRowContext(ctx, "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", c.cdc.Slot).Scan(&n)
	if err == nil {
		return false, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return false, interpretError(err)
	}
	// The state row first: a slot without one is taken for new, which only
	// costs reading the pending events from the table again.
	if _, err := c.db.ExecContext(ctx, "INSERT INTO "+c.stateTable()+" (slot, backlog_done) VALUES ($1, false) "+
		"ON CONFLICT (slot) DO UPDATE SET backlog_done = false", c.cdc.Slot); err != nil {
		return false, interpretError(err)
	}
	_, err = pglogrepl.CreateReplicationSlot(ctx, conn, c.cdc.Slot, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: "NOEXPORT_SNAPSHOT"})
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42710" { // duplicate_object: created meanwhile
			return false, nil
		}
		return false, fmt.Errorf("postgres: create replication slot %q: %w", c.cdc.Slot, err)
	}
	return true, nil
}

// ErrSlotNotFound is returned by SlotDrop and SlotStatus when the slot
// does not exist.
var ErrSlotNotFound = errors.New("postgres: replication slot not found")

// SlotDrop drops the driver's replication slot (the database then keeps
// no WAL for it; a relay started later creates a new one and reads the
// pending events from the table). It fails with ErrSlotNotFound, naming
// the slot, when there is none, and while a relay streams from it.
func (c *CDC) SlotDrop(ctx context.Context) error {
	res, err := c.db.ExecContext(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", c.cdc.Slot)
	if err != nil {
		return fmt.Errorf("postgres: drop replication slot %q: %w", c.cdc.Slot, interpretError(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: %q", ErrSlotNotFound, c.cdc.Slot)
	}
	_, _ = c.db.ExecContext(ctx, "DELETE FROM "+c.stateTable()+" WHERE slot = $1", c.cdc.Slot)
	return nil
}

// SlotStatus describes a replication slot, for operators and metrics.
type SlotStatus struct {
	// Slot is the slot's name.
	Slot string
	// Active is true while a relay streams from it; ActivePID is its
	// server process id (0 when inactive).
	Active    bool
	ActivePID int
	// ConfirmedLSN is the position up to which the relay confirmed the
	// stream; RestartLSN the oldest WAL the slot needs.
	ConfirmedLSN string
	RestartLSN   string
	// CurrentLSN is the server's WAL insert position.
	CurrentLSN string
	// LagBytes is how far ConfirmedLSN is behind CurrentLSN.
	LagBytes int64
	// LagSeconds is the streaming connection's flush lag as the server
	// measures it (pg_stat_replication.flush_lag): how long ago the WAL
	// the relay last confirmed was written. 0 when caught up or inactive.
	LagSeconds float64
	// RetainedBytes is the WAL the slot keeps (CurrentLSN - RestartLSN).
	RetainedBytes int64
	// WALStatus is pg_replication_slots.wal_status: reserved, extended,
	// unreserved (about to lose WAL: max_slot_wal_keep_size) or lost.
	WALStatus string
	// SafeBytes is pg_replication_slots.safe_wal_size: how much more WAL
	// may be written before the slot is in danger of losing what it needs
	// (-1 when max_slot_wal_keep_size is unlimited).
	SafeBytes int64
}

// SlotStatus reports the driver's replication slot, or ErrSlotNotFound.
func (c *CDC) SlotStatus(ctx context.Context) (*SlotStatus, error) {
	s := &SlotStatus{}
	var pid sql.NullInt64
	var safe sql.NullInt64
	var confirmed, restart, walStatus sql.NullString
	var lag, retained sql.NullInt64
	err := c.db.QueryRowContext(ctx, `SELECT slot_name, active, active_pid, confirmed_flush_lsn::text, restart_lsn::text,
	    pg_current_wal_lsn()::text, pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint,
	    pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint, wal_status, safe_wal_size,
	    coalesce((SELECT extract(epoch FROM r.flush_lag)::float8 FROM pg_stat_replication r WHERE r.pid = s.active_pid), 0)
	FROM pg_replication_slots s WHERE slot_name = $1`, c.cdc.Slot).Scan(&s.Slot, &s.Active, &pid, &confirmed, &restart,
		&s.CurrentLSN, &lag, &retained, &walStatus, &safe, &s.LagSeconds)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %q", ErrSlotNotFound, c.cdc.Slot)
	}
	if err != nil {
		return nil, interpretError(err)
	}
	s.ActivePID, s.ConfirmedLSN, s.RestartLSN = int(pid.Int64), confirmed.String, restart.String
	s.LagBytes, s.RetainedBytes, s.WALStatus = lag.Int64, retained.Int64, walStatus.String
	s.SafeBytes = -1
	if safe.Valid {
		s.SafeBytes = safe.Int64
	}
	return s, nil
}

// EventStreamRecord implements outboxdriver.Streamer: one transaction
// with a statement per kind of outcome (failures, holds, deliveries).
//
// A streamed event can reach the relay a moment before its transaction is
// visible to other sessions: PostgreSQL writes (and decodes) the commit
// record before it marks the transaction ended for snapshots. A statement
// then finds no row to change; such ids are tried again, a millisecond
// apart, until the row is visible (or for at most visibleWait, when it is
// gone for good). A row found visible after the statement missed it gets
// the statement once more (a later snapshot sees it); if that changes
// nothing, the row is no longer pending (delivered or retried meanwhile).
//
// An error saying that the server is shutting down ends the open streams
// (endStreams).
func (c *CDC) EventStreamRecord(ctx context.Context, p *outboxdriver.EventStreamRecordParams) error {
	err := c.record(ctx, p)
	if shuttingDown(err) {
		c.endStreams()
	}
	return err
}

// shuttingDown reports whether err is PostgreSQL's answer while it shuts
// down: a connection it refuses (57P03, "the database system is shutting
// down") or a session it ended in a crash shutdown (57P02). Not 57P01,
// which pg_terminate_backend also returns for one session.
func shuttingDown(err error) bool {
	var st interface{ SQLState() string }
	if !errors.As(err, &st) {
		return false
	}
	switch st.SQLState() {
	case "57P02", "57P03":
		return true
	}
	return false
}

// endStreams closes the replication connections of the open streams: the
// server is shutting down, and it waits for each of its walsenders to
// report everything sent to its client (see sendReceived). A stream whose
// reader waits for room in its queue reads nothing from the server, and
// its queue does not drain while the relay's outcome writes are refused:
// without this the shutdown would wait for as long as the relay runs. The
// relay opens a new stream once the server is back.
func (c *CDC) endStreams() {
	c.streams.Range(func(k, _ any) bool {
		s := k.(*stream)
		s.stop(errors.New("postgres: the server is shutting down: replication connection closed"))
		s.closing.Store(true)
		s.wakeReader()
		return true
	})
}

// record is EventStreamRecord.
func (c *CDC) record(ctx context.Context, p *outboxdriver.EventStreamRecordParams) error {
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return interpretError(err)
	}
	defer tx.Rollback() //nolint:errcheck
	if len(p.Failures) > 0 {
		type failure struct {
			ID      string `json:"id"`
			Err     string `json:"err"`
			DelayMS int64  `json:"delay_ms"`
			Dead    bool   `json:"dead"`
		}
		byID := make(map[string]failure, len(p.Failures))
		ids := make([]string, len(p.Failures))
		for i, f := range p.Failures {
			ids[i] = f.ID
			byID[f.ID] = failure{ID: f.ID, Err: strings.ToValidUTF8(strings.ReplaceAll(f.Error, "\x00", ""), ""), DelayMS: f.Delay.Milliseconds(), Dead: f.Dead}
		}
		err := c.applyVisible(ctx, tx, ids, func(ids []string) (*sql.Rows, error) {
			fs := make([]failure, len(ids))
			for i, id := range ids {
				fs[i] = byID[id]
			}
			js, err := json.Marshal(fs)
			if err != nil {
				return nil, err
			}
			return tx.QueryContext(ctx, c.queries.streamFailed, string(js))
		})
		if err != nil {
			return err
		}
	}
	for _, step := range []struct {
		ids   []string
		query string
	}{{p.Held, c.queries.streamHeld}, {p.Delivered, c.queries.streamDelivered}} {
		if len(step.ids) == 0 {
			continue
		}
		err := c.applyVisible(ctx, tx, step.ids, func(ids []string) (*sql.Rows, error) {
			return tx.QueryContext(ctx, step.query, idList(ids))
		})
		if err != nil {
			return err
		}
	}
	return interpretError(tx.Commit())
}

// visibleWait bounds how long EventStreamRecord waits for a streamed
// event's row to become visible.
const visibleWait = 2 * time.Second

// applyVisible runs a statement returning the ids it changed, again for
// the ids whose row is not visible yet (see EventStreamRecord).
func (c *CDC) applyVisible(ctx context.Context, tx *sql.Tx, ids []string, run func(ids []string) (*sql.Rows, error)) error {
	deadline := time.Now().Add(visibleWait)
	for {
		rows, err := run(ids)
		if err != nil {
			return interpretError(err)
		}
		done, err := scanIDs(rows)
		if err != nil {
			return err
		}
		missing := without(ids, done)
		if len(missing) == 0 {
			return nil
		}
		rows, err = tx.QueryContext(ctx, "SELECT id::text FROM "+c.table+" WHERE id = ANY(string_to_array($1, ',')::uuid[])", idList(missing))
		if err != nil {
			return interpretError(err)
		}
		visible, err := scanIDs(rows)
		if err != nil {
			return err
		}
		if len(visible) > 0 {
			// Visible now: either no longer pending, or committed between
			// the statement's snapshot and this one's. Once more, with a
			// snapshot that sees them.
			var again []string
			for _, id := range missing {
				if visible[strings.ToLower(id)] {
					again = append(again, id)
				}
			}
			rows, err := run(again)
			if err != nil {
				return interpretError(err)
			}
			if _, err := scanIDs(rows); err != nil {
				return err
			}
		}
		ids = without(missing, visible)
		if len(ids) == 0 || time.Now().After(deadline) {
			return nil
		}
		t := time.NewTimer(time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

func scanIDs(rows *sql.Rows) (map[string]bool, error) {
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, interpretError(err)
		}
		out[id] = true
	}
	return out, interpretError(rows.Err())
}

// without returns the ids not in drop; ids compare in canonical (lower
// case, hyphenated) form, as PostgreSQL prints a uuid.
func without(ids []string, drop map[string]bool) []string {
	var out []string
	for _, id := range ids {
		if !drop[strings.ToLower(id)] {
			out = append(out, id)
		}
	}
	return out
}

// EventStreamOpen implements outboxdriver.Streamer: it checks the server
// (wal_level, publication), creates the slot if needed, and starts
// streaming from it; while another connection streams from the slot it
// tries again every second (a hot standby). The first batch holds the
// events the table keeps for the stream (stream_inplay.sql).
func (c *CDC) EventStreamOpen(ctx context.Context, p *outboxdriver.EventStreamOpenParams) (outboxdriver.EventStream, error) {
	if err := c.checkServer(ctx); err != nil {
		return nil, err
	}
	cfg := c.conn.Copy()
	if p.RelayID != "" {
		cfg.RuntimeParams["application_name"] = truncateName(p.RelayID)
	}
	waiting := false
	for {
		conn, err := pgconn.ConnectConfig(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("postgres: replication connection: %w", err)
		}
		created, err := c.createSlot(ctx, conn)
		if err != nil {
			conn.Close(context.WithoutCancel(ctx))
			return nil, err
		}
		err = pglogrepl.StartReplication(ctx, conn, c.cdc.Slot, 0, pglogrepl.StartReplicationOptions{
			Mode:       pglogrepl.LogicalReplication,
			PluginArgs: []string{"proto_version '1'", "publication_names '" + c.Publication() + "'"},
		})
		if err == nil {
			return c.startStream(ctx, conn, created, p)
		}
		conn.Close(context.WithoutCancel(ctx))
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "55006" { // object_in_use: another relay streams
			return nil, fmt.Errorf("postgres: start replication on slot %q: %w", c.cdc.Slot, err)
		}
		if !waiting && p.Logger != nil {
			waiting = true
			p.Logger.Info("replication slot held by another relay; waiting as a hot standby", "slot", c.cdc.Slot)
		}
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

func truncateName(s string) string {
	if len(s) > 63 {
		return s[:63]
	}
	return s
}

// startStream reads what the table keeps for the stream and starts the
// stream's reader.
func (c *CDC) startStream(ctx context.Context, conn *pgconn.PgConn, created bool, p *outboxdriver.EventStreamOpenParams) (*stream, error) {
	fail := func(err error) (*stream, error) {
		conn.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	backlogDone := false
	if !created {
		err := c.db.QueryRowContext(ctx, "SELECT backlog_done FROM "+c.stateTable()+" WHERE slot = $1", c.cdc.Slot).Scan(&backlogDone)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fail(interpretError(err))
		}
	}
	// The events the table holds for the stream are read in one snapshot
	// (a read-only repeatable-read transaction): their seqs at once, the
	// rows through a cursor a batch at a time as Next hands them out, so
	// that a large backlog is never all in memory.
	tx, err := c.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return fail(interpretError(err))
	}
	failTx := func(err error) (*stream, error) {
		_ = tx.Rollback()
		return fail(err)
	}
	rows, err := tx.QueryContext(ctx, c.queries.streamInplaySeqs, !backlogDone)
	if err != nil {
		return failTx(interpretError(err))
	}
	var initial []int64
	for rows.Next() {
		var seq int64
		if err := rows.Scan(&seq); err != nil {
			rows.Close()
			return failTx(interpretError(err))
		}
		initial = append(initial, seq)
	}
	if err := rows.Err(); err != nil {
		return failTx(interpretError(err))
	}
	var scanEnd pglogrepl.LSN
	if err := tx.QueryRowContext(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&scanEnd); err != nil {
		return failTx(interpretError(err))
	}
	if len(initial) == 0 {
		_ = tx.Rollback()
		tx = nil
	} else if _, err := tx.ExecContext(ctx, "DECLARE outboxkit_initial NO SCROLL CURSOR FOR "+c.queries.streamInplay, !backlogDone); err != nil {
		return failTx(interpretError(err))
	}
	s := &stream{c: c, conn: conn, batch: max(p.BatchSize, 1), initialTx: tx, initial: initial, scanEnd: uint64(scanEnd),
		backlogDone: backlogDone, relations: map[uint32]*relation{},
		ready: make(chan struct{}, 1), wake: make(chan struct{}, 1), done: make(chan struct{}), sentCh: make(chan struct{}),
		types: pgtype.NewMap()}
	if p.Logger != nil {
		p.Logger.Debug("change stream started", "slot", c.cdc.Slot, "created", created, "from_table", len(initial))
	}
	c.streams.Store(s, struct{}{})
	go s.read()
	return s, nil
}

// fetchInitial returns the next batch of the events the table held for
// the stream at its start, none once they are all handed out.
func (s *stream) fetchInitial(ctx context.Context) ([]*outboxdriver.EventRow, error) {
	s.initialMu.Lock()
	defer s.initialMu.Unlock()
	if s.initialTx == nil {
		return nil, nil
	}
	rows, err := s.initialTx.QueryContext(ctx, "FETCH FORWARD "+strconv.Itoa(s.batch)+" FROM outboxkit_initial")
	if err != nil {
		return nil, fmt.Errorf("postgres: reading the events the table holds for the stream: %w", interpretError(err))
	}
	var out []*outboxdriver.EventRow
	for rows.Next() {
		r, err := scanRow(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: reading the events the table holds for the stream: %w", interpretError(err))
	}
	if len(out) == 0 {
		s.closeInitial()
	}
	return out, nil
}

// closeInitial ends the snapshot of the initial read; initialMu is held.
func (s *stream) closeInitial() {
	if s.initialTx != nil {
		_ = s.initialTx.Rollback()
		s.initialTx = nil
	}
}

// inInitial reports whether the event of seq was one of those the stream
// read from the table at its start.
func (s *stream) inInitial(seq int64) bool {
	_, found := slices.BinarySearch(s.initial, seq)
	return found
}

// relation is an outbox table's layout as the stream described it.
type relation struct {
	ours bool
	cols map[string]int
}

// txn is one committed transaction's events.
type txn struct {
	rows []*outboxdriver.EventRow
	end  uint64
}

// stream is an open replication stream; its reader goroutine owns conn.
type stream struct {
	c     *CDC
	conn  *pgconn.PgConn
	batch int
	types *pgtype.Map

	// initial are the seqs of the events read from the table at the start
	// (sorted); initialTx holds that read's snapshot and its cursor until
	// every row was fetched.
	initial     []int64
	initialTx   *sql.Tx
	initialMu   sync.Mutex
	scanEnd     uint64
	backlogDone bool
	backlogMu   sync.Mutex

	// Reader state (reader goroutine only).
	relations  map[uint32]*relation
	cols       []tupleCol // decodeChange's buffer
	cur        []*outboxdriver.EventRow
	curRetried []string // ids of the retries in cur
	inTxn      bool
	lastCommit uint64 // end of the last transaction received
	serverEnd  uint64 // position of the last keepalive
	pushedEnd  uint64 // end of the last transaction queued
	sent       uint64 // position last reported
	lastStatus time.Time

	mu     sync.Mutex
	queue  []txn
	queued atomic.Int64  // rows in queue (changed under mu, read by queueFull without it)
	ready  chan struct{} // signalled when queue grows
	wake   chan struct{} // signalled when Next takes from queue, and by wakeReader
	err    error         // why the reader stopped
	done   chan struct{} // closed when the reader stopped
	sentCh chan struct{} // closed and replaced when sent grows

	confirmReq atomic.Uint64
	recvCancel atomic.Pointer[context.CancelFunc] // ends the reader's current receive
	closeOnce  sync.Once
	closing    atomic.Bool
}

// Next implements outboxdriver.EventStream.
func (s *stream) Next(ctx context.Context) (*outboxdriver.StreamBatch, error) {
	// First the events the table holds, in batches, so that the relay's
	// window bounds what a crash publishes again.
	rows, err := s.fetchInitial(ctx)
	if err != nil {
		return nil, err
	}
	if len(rows) > 0 {
		return &outboxdriver.StreamBatch{Rows: rows}, nil
	}
	for {
		s.mu.Lock()
		if len(s.queue) > 0 {
			b := &outboxdriver.StreamBatch{}
			if first := &s.queue[0]; len(first.rows) > s.batch {
				// A transaction larger than a batch goes out a batch at a
				// time, so that the relay's window (and what a crash may
				// publish again) stays BatchSize x Concurrency; only its
				// last part carries the position to confirm.
				b.Rows = first.rows[:s.batch:s.batch]
				first.rows = first.rows[s.batch:]
			} else {
				n := 0
				for n < len(s.queue) && len(b.Rows)+len(s.queue[n].rows) <= s.batch {
					b.Rows = append(b.Rows, s.queue[n].rows...)
					b.End = s.queue[n].end
					n++
				}
				s.queue = s.queue[n:]
			}
			s.queued.Add(-int64(len(b.Rows)))
			s.mu.Unlock()
			signal(s.wake)
			return b, nil
		}
		err := s.err
		s.mu.Unlock()
		if err != nil {
			return nil, err
		}
		select {
		case <-s.ready:
		case <-s.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Confirm implements outboxdriver.EventStream.
func (s *stream) Confirm(ctx context.Context, pos uint64) error {
	for {
		old := s.confirmReq.Load()
		if pos <= old || s.confirmReq.CompareAndSwap(old, pos) {
			break
		}
	}
	if !s.backlogDone && pos > 0 {
		s.backlogMu.Lock()
		if !s.backlogDone {
			// Every event read from the table at the start is settled
			// (the relay confirms in order): the backlog is done.
			if _, err := s.c.db.ExecContext(ctx, "UPDATE "+s.c.stateTable()+" SET backlog_done = true WHERE slot = $1", s.c.cdc.Slot); err == nil {
				s.backlogDone = true
			}
		}
		s.backlogMu.Unlock()
	}
	s.wakeReader()
	for {
		s.mu.Lock()
		sent, ch, err := s.sent, s.sentCh, s.err
		s.mu.Unlock()
		if sent >= pos {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case <-ch:
		case <-s.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close implements outboxdriver.EventStream: it reports the confirmed
// position and closes the connection, which frees the slot.
func (s *stream) Close() error {
	s.closeOnce.Do(func() {
		s.closing.Store(true)
		s.wakeReader()
	})
	<-s.done
	s.initialMu.Lock()
	s.closeInitial()
	s.initialMu.Unlock()
	return nil
}

// wakeReader ends the reader's current receive, if any, or its wait for
// room in the queue.
func (s *stream) wakeReader() {
	if c := s.recvCancel.Load(); c != nil {
		(*c)()
	}
	signal(s.wake)
}

// signal makes a pending receive on ch (capacity 1) return, now or at the
// next receive.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// queueFull reports whether the reader has queued as many rows as the
// relay may take in maxQueuedBatches batches: it then stops reading the
// log until Next takes some, so that a backlog streamed from the log (a
// relay that was down) is held in memory a few batches at a time, not
// whole. One transaction is still decoded whole, however large.
func (s *stream) queueFull() bool {
	return s.queued.Load() >= int64(maxQueuedBatches*s.batch)
}

// maxQueuedBatches is how many batches of decoded events the reader keeps
// ready for Next.
const maxQueuedBatches = 8

func (s *stream) stop(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

// read is the reader goroutine: it decodes the stream into transactions,
// and reports the position when a Confirm waits, when the server asks, and
// every StatusInterval.
func (s *stream) read() {
	defer close(s.done)
	defer s.c.streams.Delete(s)
	defer s.conn.Close(context.Background())
	s.lastStatus = time.Now()
	for {
		if s.closing.Load() {
			_ = s.sendStatus()
			s.stop(errors.New("postgres: stream closed"))
			return
		}
		if s.confirmReq.Load() > s.sent || time.Since(s.lastStatus) >= s.c.cdc.StatusInterval {
			if err := s.sendStatus(); err != nil {
				s.stop(fmt.Errorf("postgres: replication status update: %w", err))
				return
			}
		}
		if s.queueFull() {
			// Still report the position every StatusInterval: the server
			// drops a connection that stays silent for wal_sender_timeout.
			t := time.NewTimer(max(s.c.cdc.StatusInterval-time.Since(s.lastStatus), time.Millisecond))
			select {
			case <-s.wake: // Next took rows, a Confirm waits, or Close
			case <-t.C:
			}
			t.Stop()
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), max(s.c.cdc.StatusInterval-time.Since(s.lastStatus), time.Millisecond))
		// A Confirm cancels the receive to have its position sent: it
		// stores its position before it loads recvCancel, and this
		// goroutine stores recvCancel before it checks the position, so
		// one of the two sees the other.
		s.recvCancel.Store(&cancel)
		if s.confirmReq.Load() > s.sent || s.closing.Load() {
			cancel()
		}
		msg, err := s.conn.ReceiveMessage(ctx)
		s.recvCancel.Store(nil)
		cancel()
		if err != nil {
			if (pgconn.Timeout(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) && !s.conn.IsClosed() {
				continue // the status interval ran out, or a Confirm waits
			}
			s.stop(fmt.Errorf("postgres: replication stream: %w", err))
			return
		}
		switch msg := msg.(type) {
		case *pgproto3.CopyData:
			if err := s.handle(msg.Data); err != nil {
				s.stop(err)
				return
			}
		case *pgproto3.ErrorResponse:
			s.stop(fmt.Errorf("postgres: replication stream: %w", pgconn.ErrorResponseToPgError(msg)))
			return
		}
	}
}

// position is what the stream may report: what the relay confirmed, or,
// when every transaction with events is confirmed and none is being
// received, the last transaction or keepalive position (so that an idle
// outbox does not make the slot retain the WAL of other tables).
func (s *stream) position() uint64 {
	pos := s.confirmReq.Load()
	s.mu.Lock()
	queued := len(s.queue)
	s.mu.Unlock()
	if pos >= s.pushedEnd && queued == 0 && !s.inTxn {
		pos = max(pos, s.lastCommit, s.serverEnd)
	}
	return pos
}

func (s *stream) sendStatus() error {
	pos := s.position()
	err := pglogrepl.SendStandbyStatusUpdate(context.Background(), s.conn, pglogrepl.StandbyStatusUpdate{WALWritePosition: pglogrepl.LSN(pos)})
	if err != nil {
		return err
	}
	s.lastStatus = time.Now()
	s.mu.Lock()
	if pos > s.sent {
		s.sent = pos
		close(s.sentCh)
		s.sentCh = make(chan struct{})
	}
	s.mu.Unlock()
	return nil
}

// sendReceived answers a keepalive that asks for a reply while the relay
// cannot confirm everything the server sent (end): it reports end as
// written and leaves the flushed position unset. PostgreSQL's shutdown
// (pg_ctl stop or restart) sends such a keepalive and waits until each
// walsender's client reports everything sent, flushed or, when flushed is
// unset, written. A relay holding unsettled events, whose outcome writes the
// shutting-down server refuses, would otherwise hold the shutdown for as
// long as the relay runs. An unset flushed position does not move the slot:
// the unconfirmed events are streamed again after the restart. The next
// regular status update reports the confirmed position again.
func (s *stream) sendReceived(end uint64) error {
	data := make([]byte, 0, 34)
	data = append(data, pglogrepl.StandbyStatusUpdateByteID)
	data = binary.BigEndian.AppendUint64(data, end) // written: all received
	data = binary.BigEndian.AppendUint64(data, 0)   // flushed: unset
	data = binary.BigEndian.AppendUint64(data, 0)   // applied: unset
	data = binary.BigEndian.AppendUint64(data, uint64(time.Since(pgEpoch).Microseconds()))
	data = append(data, 0) // no reply requested
	buf, err := (&pgproto3.CopyData{Data: data}).Encode(nil)
	if err != nil {
		return err
	}
	if err := s.conn.Frontend().SendUnbufferedEncodedCopyData(buf); err != nil {
		return fmt.Errorf("postgres: replication status update: %w", err)
	}
	return nil
}

// pgEpoch is the origin of PostgreSQL's timestamps in the replication
// protocol.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func (s *stream) handle(data []byte) error {
	if len(data) == 0 {
		return nil
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		pkm, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return fmt.Errorf("postgres: replication keepalive: %w", err)
		}
		s.serverEnd = max(s.serverEnd, uint64(pkm.ServerWALEnd))
		if pkm.ReplyRequested {
			if end := uint64(pkm.ServerWALEnd); s.position() < end {
				return s.sendReceived(end)
			}
			return s.sendStatus()
		}
	case pglogrepl.XLogDataByteID:
		xld, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return fmt.Errorf("postgres: replication data: %w", err)
		}
		return s.decode(xld.WALData)
	}
	return nil
}

func (s *stream) decode(wal []byte) error {
	if len(wal) > 0 && (wal[0] == 'I' || wal[0] == 'U') {
		return s.decodeChange(wal)
	}
	msg, err := pglogrepl.Parse(wal)
	if err != nil {
		return fmt.Errorf("postgres: decoding pgoutput: %w", err)
	}
	switch m := msg.(type) {
	case *pglogrepl.RelationMessage:
		rel := &relation{cols: map[string]int{}}
		schema := s.c.cfg.Schema
		rel.ours = m.RelationName == s.c.cfg.Table && (schema == "" || m.Namespace == schema)
		for i, col := range m.Columns {
			rel.cols[col.Name] = i
		}
		s.relations[m.RelationID] = rel
	case *pglogrepl.BeginMessage:
		s.inTxn, s.cur, s.curRetried = true, nil, nil
	case *pglogrepl.CommitMessage:
		end := uint64(m.TransactionEndLSN)
		s.inTxn, s.lastCommit = false, max(s.lastCommit, end)
		rows := s.cur
		s.cur = nil
		if end <= s.scanEnd && len(rows) > 0 {
			// Committed before this stream started: the earlier stream
			// handed it out and did not confirm it. Drop what the read of
			// the table at the start returned, and what already has its
			// fate in the table (delivered or dead: a crash after the
			// outcome was written, before the position was confirmed). A
			// row not visible yet is kept.
			settled, err := s.settledIDs(rows)
			if err != nil {
				return err
			}
			kept := rows[:0]
			for _, r := range rows {
				if !s.inInitial(r.Seq) && !settled[strings.ToLower(r.ID)] {
					kept = append(kept, r)
				}
			}
			rows = kept
		}
		if len(rows) == 0 {
			return nil
		}
		if end > s.scanEnd && len(s.curRetried) > 0 {
			s.awaitVisible(s.curRetried)
		}
		s.pushedEnd = end
		s.mu.Lock()
		s.queue = append(s.queue, txn{rows: rows, end: end})
		s.queued.Add(int64(len(rows)))
		s.mu.Unlock()
		signal(s.ready)
	}
	return nil
}

// decodeChange handles an Insert (a new event) or an Update (a retry when
// it marks a pending row locked_by = 'retry'; anything else is ignored).
func (s *stream) decodeChange(wal []byte) error {
	relID, cols, err := decodeChange(wal, s.cols)
	if err != nil {
		return err
	}
	s.cols = cols
	rel := s.relations[relID]
	if rel == nil || !rel.ours {
		return nil
	}
	if wal[0] == 'U' && (!colIs(rel, cols, "status", string(outboxdriver.StatusPending)) || !colIs(rel, cols, "locked_by", "retry")) {
		return nil // the relay's own writes, or an application's
	}
	row, err := s.row(rel, cols)
	if err != nil {
		return err
	}
	// A retry's new tuple is the row, except a TOASTed column the update
	// did not change (a large payload or headers), which pgoutput leaves
	// out: read that from the table. Such a column never changes, so any
	// version of the row holds it. At its commit (see decode), a live
	// retry is handed out once it is visible (awaitVisible), and a
	// replayed one whose event has its fate since is dropped.
	if wal[0] == 'U' {
		s.curRetried = append(s.curRetried, row.ID)
	}
	if unchanged(rel, cols, "payload") || unchanged(rel, cols, "headers") {
		stored, err := s.c.EventGet(context.Background(), &outboxdriver.EventGetParams{ID: row.ID})
		if errors.Is(err, outboxdriver.ErrNotFound) {
			return nil // deleted since
		}
		if err != nil {
			return fmt.Errorf("postgres: reading retried event %s: %w", row.ID, err)
		}
		row.Payload, row.Headers = stored.Payload, stored.Headers
	}
	s.cur = append(s.cur, row)
	return nil
}

// awaitVisible waits (at most visibleWait) until the retries of a live
// transaction, ids, are visible to other sessions: a commit is decoded
// before it ends for snapshots, and an outcome written while the retry is
// not visible would miss the row (it matches pending rows only), leaving
// the event pending with nobody to send it. Only live transactions wait:
// a replayed one is long visible, and its events may have their fate by
// now.
func (s *stream) awaitVisible(ids []string) {
	slices.Sort(ids)
	ids = slices.Compact(ids)
	list := idList(ids)
	for deadline := time.Now().Add(visibleWait); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		var n int
		err := s.c.db.QueryRowContext(context.Background(), "SELECT count(*) FROM "+s.c.table+
			" WHERE id = ANY(string_to_array($1, ',')::uuid[]) AND status = 'pending' AND locked_by = 'retry'", list).Scan(&n)
		if err != nil || n >= len(ids) {
			return // an error shows again where it matters: recording the outcomes
		}
	}
}

// unchanged reports whether col is a TOASTed value the change left as it
// was, which pgoutput does not send.
func unchanged(rel *relation, cols []tupleCol, col string) bool {
	i, ok := rel.cols[col]
	return ok && i < len(cols) && cols[i].kind == 'u'
}

// settledIDs returns the ids of rows whose event is no longer pending.
func (s *stream) settledIDs(rows []*outboxdriver.EventRow) (map[string]bool, error) {
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	res, err := s.c.db.QueryContext(context.Background(), "SELECT id::text FROM "+s.c.table+
		" WHERE id = ANY(string_to_array($1, ',')::uuid[]) AND status <> 'pending'", idList(ids))
	if err != nil {
		return nil, fmt.Errorf("postgres: reading the fate of re-streamed events: %w", interpretError(err))
	}
	return scanIDs(res)
}

func colIs(rel *relation, cols []tupleCol, col, want string) bool {
	i, ok := rel.cols[col]
	return ok && i < len(cols) && cols[i].kind == 't' && string(cols[i].data) == want
}

func text(rel *relation, cols []tupleCol, col string) string {
	i, ok := rel.cols[col]
	if !ok || i >= len(cols) || cols[i].kind != 't' {
		return ""
	}
	return string(cols[i].data)
}

// row decodes an inserted or retried outbox row.
func (s *stream) row(rel *relation, t []tupleCol) (*outboxdriver.EventRow, error) {
	r := &outboxdriver.EventRow{Status: outboxdriver.Status(text(rel, t, "status")), ID: text(rel, t, "id"),
		Type: text(rel, t, "type"), Topic: text(rel, t, "topic"), Key: text(rel, t, "key"),
		Headers: []byte(text(rel, t, "headers")), LastError: text(rel, t, "last_error"), LockedBy: text(rel, t, "locked_by")}
	var err error
	if r.Seq, err = strconv.ParseInt(text(rel, t, "seq"), 10, 64); err != nil {
		return nil, fmt.Errorf("postgres: streamed row without a seq: %w", err)
	}
	if r.ID == "" {
		return nil, fmt.Errorf("postgres: streamed row %d without an id", r.Seq)
	}
	if a := text(rel, t, "attempts"); a != "" {
		n, _ := strconv.Atoi(a)
		r.Attempts = n
	}
	// A value that does not decode leaves the field empty: the relay then
	// marks the event dead as unreadable, with the reason.
	if i, ok := rel.cols["payload"]; ok && i < len(t) && t[i].kind == 't' {
		var b []byte
		if err := s.types.Scan(pgtype.ByteaOID, pgtype.TextFormatCode, t[i].data, &b); err == nil {
			r.Payload = b
		}
	}
	if r.Payload == nil {
		r.Payload = []byte{}
	}
	if v := text(rel, t, "created_at"); v != "" {
		var ts time.Time
		if err := s.types.Scan(pgtype.TimestamptzOID, pgtype.TextFormatCode, []byte(v), &ts); err == nil {
			r.CreatedAt = ts
		}
	}
	r.NextAttemptAt = r.CreatedAt
	return r, nil
}
