package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/google/uuid"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

const columns = `seq, id, type, topic, event_key, payload, headers, status, attempts, COALESCE(last_error, ''),
	created_at, next_attempt_at, delivered_at, COALESCE(locked_by, ''), locked_until`

type queries struct {
	claimLock, claim, lease, pendingOfKeys               string
	extend, markDelivered, markFailed, release, retryIDs string
	retryDead, retryDeadType, purge, stats, get          string
}

// newQueries renders every statement for one table. The only substitutions
// are the validated, quoted table names and, for the "{IDS}" placeholder
// lists, a run of "?"; values are always bind parameters.
//
// Time is always the database's (UTC_TIMESTAMP(6), which ignores the
// session time_zone), never the application's clock.
func newQueries(t, lock string) queries {
	r := strings.NewReplacer("{T}", t, "{L}", lock)
	return queries{
		claimLock: r.Replace(`SELECT id FROM {L} WHERE id = 1 FOR UPDATE`),
		// The NOT EXISTS subquery is a plain (non-locking) read: the locking
		// clause of the outer query does not lock subquery rows, so SKIP
		// LOCKED cannot hide a blocking row from it.
		claim: r.Replace(`SELECT o.seq, o.id, o.type, o.topic, o.event_key, o.payload, o.headers, o.attempts, o.created_at
FROM {T} o FORCE INDEX (claim_idx)
WHERE o.status = 'pending'` + readyEvent + `
ORDER BY o.seq
LIMIT ?
FOR UPDATE SKIP LOCKED`),
		pendingOfKeys: r.Replace(`SELECT event_key, seq FROM {T} FORCE INDEX (pending_key_idx)
WHERE status = 'pending' AND event_key IN ({IDS}) AND seq <= ?`),
		lease: r.Replace(`UPDATE {T} SET locked_by = ?, locked_until = UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND
WHERE seq IN ({IDS})`),
		extend: r.Replace(`UPDATE {T} SET locked_until = UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND
WHERE locked_by = ? AND status = 'pending' AND id IN ({IDS})`),
		markDelivered: r.Replace(`UPDATE {T} SET status = 'delivered', delivered_at = UTC_TIMESTAMP(6),
	attempts = attempts + 1, locked_by = NULL, locked_until = NULL
WHERE locked_by = ? AND status = 'pending' AND id IN ({IDS})`),
		markFailed: r.Replace(failedAttempt + `,
	locked_by = NULL, locked_until = NULL
WHERE id = ? AND locked_by = ? AND status = 'pending'`),
		release: r.Replace(`UPDATE {T} SET locked_by = NULL, locked_until = NULL
WHERE locked_by = ? AND status = 'pending' AND id IN ({IDS})`),
		retryIDs: r.Replace(`UPDATE {T} SET status = 'pending', attempts = 0, next_attempt_at = UTC_TIMESTAMP(6),
	locked_by = NULL, locked_until = NULL
WHERE id IN ({IDS})
  AND (status <> 'pending' OR locked_until IS NULL OR locked_until < UTC_TIMESTAMP(6))`),
		retryDead: r.Replace(`UPDATE {T} SET status = 'pending', attempts = 0, next_attempt_at = UTC_TIMESTAMP(6),
	locked_by = NULL, locked_until = NULL
WHERE status = 'dead'`),
		retryDeadType: r.Replace(`UPDATE {T} SET status = 'pending', attempts = 0, next_attempt_at = UTC_TIMESTAMP(6),
	locked_by = NULL, locked_until = NULL
WHERE status = 'dead' AND type = ?`),
		purge: r.Replace(`DELETE FROM {T} WHERE status = 'delivered' AND delivered_at < ? ORDER BY delivered_at LIMIT ?`),
		stats: r.Replace(`SELECT
	(SELECT COUNT(*) FROM {T} WHERE status = 'pending'),
	(SELECT COUNT(*) FROM {T} WHERE status = 'dead'),
	(SELECT created_at FROM {T} WHERE status = 'pending' ORDER BY seq LIMIT 1),
	(SELECT COUNT(*) FROM {T} WHERE status = 'delivered' AND delivered_at > UTC_TIMESTAMP(6) - INTERVAL 1 MINUTE),
	UTC_TIMESTAMP(6)`),
		get: r.Replace(`SELECT ` + columns + ` FROM {T} WHERE id = ?`),
	}
}

// failedAttempt is the head of both claims' failure statement; parameters:
// the error, dead, the retry delay in microseconds, dead. MySQL evaluates
// SET assignments left to right with the new values, so next_attempt_at
// (which reads only itself) comes before status.
const failedAttempt = `UPDATE {T} SET attempts = attempts + 1, last_error = ?,
	next_attempt_at = IF(?, next_attempt_at, UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND),
	status = IF(?, 'dead', 'pending')`

// readyEvent is the part of both claims' WHERE clause (alias o, after the
// status test) that picks ready events: retry time come, not leased, and
// no earlier event of the key leased or in backoff (read from held_idx).
const readyEvent = `
  AND o.next_attempt_at <= UTC_TIMESTAMP(6)
  AND (o.locked_until IS NULL OR o.locked_until < UTC_TIMESTAMP(6))
  AND (o.event_key = '' OR NOT EXISTS (
	SELECT 1 FROM {T} p
	WHERE p.held_key = o.event_key AND p.seq < o.seq
	  AND (p.next_attempt_at > UTC_TIMESTAMP(6) OR p.locked_until >= UTC_TIMESTAMP(6))))`

// withIDs replaces the {IDS} placeholder with n bind parameters.
func withIDs(query string, n int) string {
	return strings.Replace(query, "{IDS}", strings.TrimSuffix(strings.Repeat("?,", n), ","), 1)
}

// maxInsertRows keeps one INSERT far under MySQL's 65535 placeholders (8 per row).
const maxInsertRows = 1000

// maxInsertBytes bounds the payload and header bytes of one INSERT so that a
// statement stays under the server's max_allowed_packet (16 MiB on MariaDB,
// 64 MiB on MySQL 8 by default). A single event larger than this is sent
// alone.
const maxInsertBytes = 4 << 20

// maxIDsPerStatement bounds IN lists of relay and admin statements.
const maxIDsPerStatement = 1000

const insertColumns = 8

func insertSQL(table string, n int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO " + table + " (id, type, topic, event_key, payload, headers, created_at, next_attempt_at) VALUES ")
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		// next_attempt_at is the database's clock: a writer whose clock runs
		// ahead of the database's must not delay its own events.
		b.WriteString("(?,?,?,?,?,?,?,UTC_TIMESTAMP(6))")
	}
	// Not INSERT IGNORE, which would also hide truncation and other errors.
	b.WriteString(" ON DUPLICATE KEY UPDATE id = id")
	return b.String()
}

// EventInsert implements outboxdriver.Driver. It writes through p.Tx only,
// with a plain INSERT: the relay's statements take record locks only, so the
// INSERT never waits for them.
func (d *Driver) EventInsert(ctx context.Context, p *outboxdriver.EventInsertParams) error {
	if p.Tx == nil {
		return errors.New("mysql: EventInsert needs the caller's transaction")
	}
	for start := 0; start < len(p.Events); {
		end, size := start, 0
		for end < len(p.Events) && end-start < maxInsertRows {
			n := len(p.Events[end].Payload) + len(p.Events[end].Headers)
			if end > start && size+n > maxInsertBytes {
				break
			}
			size += n
			end++
		}
		chunk := p.Events[start:end]
		start = end
		query := d.insertN1
		if len(chunk) > 1 {
			query = insertSQL(d.table, len(chunk))
		}
		args := make([]any, 0, len(chunk)*insertColumns)
		for _, e := range chunk {
			// Headers go as a string: MySQL 8 refuses to build a JSON value
			// from a binary string.
			args = append(args, e.ID, e.Type, e.Topic, e.Key, e.Payload, string(e.Headers), e.CreatedAt.UTC())
		}
		res, err := p.Tx.ExecContext(ctx, query, args...)
		if err != nil {
			return interpretError(err)
		}
		// ON DUPLICATE KEY UPDATE id = id counts an inserted row 1 and a
		// skipped duplicate 0 (the DSN's default clientFoundRows=false): only
		// a short count costs the read-back that tells an idempotent retry
		// from a reused id.
		if n, err := res.RowsAffected(); err != nil || n < int64(len(chunk)) {
			if err := d.checkDuplicates(ctx, p.Tx, chunk, start-len(chunk)); err != nil {
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
	args := make([]any, len(chunk))
	for i, e := range chunk {
		args[i] = e.ID
	}
	return interpretError(outboxdriver.CheckDuplicates(ctx, tx,
		withIDs("SELECT id, type, topic, event_key, payload FROM "+d.table+" WHERE id IN ({IDS})", len(chunk)), args, chunk, first))
}

// readCommitted runs fn in a READ COMMITTED transaction: whatever the
// session or server default (REPEATABLE READ, or SERIALIZABLE), InnoDB then
// takes no gap or next-key locks for our scans and updates, so nothing we
// hold can make an application INSERT wait.
func (d *Driver) readCommitted(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := d.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return interpretError(err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	if err := fn(tx); err != nil {
		return err
	}
	return interpretError(tx.Commit())
}

// EventClaimBatch implements outboxdriver.Driver. MySQL has no UPDATE ...
// RETURNING, so one short READ COMMITTED transaction takes the relays' claim
// lock, selects and locks the ready rows (FOR UPDATE SKIP LOCKED), leases
// them, and commits before anything is published.
func (d *Driver) EventClaimBatch(ctx context.Context, p *outboxdriver.EventClaimBatchParams) ([]*outboxdriver.EventRow, error) {
	if p.Limit <= 0 {
		return nil, nil
	}
	var out []*outboxdriver.EventRow
	err := d.readCommitted(ctx, func(tx *sql.Tx) error {
		out = out[:0]
		// Only relays lock this row: claims serialize (two relays never split
		// one key's events between them) while writers never wait.
		var one int
		if err := tx.QueryRowContext(ctx, d.queries.claimLock).Scan(&one); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("mysql: relay lock row missing in %s: %w", d.lockTable, outboxdriver.ErrNotMigrated)
			}
			return interpretError(err)
		}
		rows, err := tx.QueryContext(ctx, d.queries.claim, p.Limit)
		if err != nil {
			return interpretError(err)
		}
		defer rows.Close()
		for rows.Next() {
			r := &outboxdriver.EventRow{Status: outboxdriver.StatusPending, LockedBy: p.RelayID}
			if err := rows.Scan(&r.Seq, &r.ID, &r.Type, &r.Topic, &r.Key, &r.Payload, &r.Headers, &r.Attempts, &r.CreatedAt); err != nil {
				return interpretError(err)
			}
			out = append(out, r)
		}
		if err := rows.Err(); err != nil {
			return interpretError(err)
		}
		rows.Close()
		if len(out) == 0 {
			return nil
		}
		if out, err = d.dropKeysWithGaps(ctx, tx, out); err != nil || len(out) == 0 {
			return err
		}
		for start := 0; start < len(out); start += maxIDsPerStatement {
			chunk := out[start:min(start+maxIDsPerStatement, len(out))]
			args := make([]any, 0, len(chunk)+2)
			args = append(args, p.RelayID, p.Lease.Microseconds())
			for _, r := range chunk {
				args = append(args, r.Seq)
			}
			if _, err := tx.ExecContext(ctx, withIDs(d.queries.lease, len(chunk)), args...); err != nil {
				return interpretError(err)
			}
		}
		if d.claimHook != nil {
			d.claimHook()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out, nil
}

// dropKeysWithGaps removes from a claim every key that has a pending event,
// not claimed, before its last claimed one. Under READ COMMITTED a locking
// read returns the newest committed rows but skips (SKIP LOCKED) the rows of
// a transaction still committing, so one scan can see part of a writer's
// transaction: without this check it could lease a key's later events and
// leave its earlier ones to another relay. This plain read runs after the
// scan, in a new statement, so it sees the whole commit. The claim lock is
// held, so no other claim changes the answer.
func (d *Driver) dropKeysWithGaps(ctx context.Context, tx *sql.Tx, rows []*outboxdriver.EventRow) ([]*outboxdriver.EventRow, error) {
	claimed := map[string]map[int64]bool{}
	last := map[string]int64{}
	var keys []any
	var maxSeq int64
	for _, r := range rows {
		if r.Key == "" {
			continue
		}
		if claimed[r.Key] == nil {
			claimed[r.Key] = map[int64]bool{}
			keys = append(keys, r.Key)
		}
		claimed[r.Key][r.Seq] = true
		last[r.Key] = max(last[r.Key], r.Seq)
		maxSeq = max(maxSeq, r.Seq)
	}
	gap := map[string]bool{}
	for start := 0; start < len(keys); start += maxIDsPerStatement {
		chunk := keys[start:min(start+maxIDsPerStatement, len(keys))]
		args := append(append([]any{}, chunk...), maxSeq)
		res, err := tx.QueryContext(ctx, withIDs(d.queries.pendingOfKeys, len(chunk)), args...)
		if err != nil {
			return nil, interpretError(err)
		}
		for res.Next() {
			var key string
			var seq int64
			if err := res.Scan(&key, &seq); err != nil {
				res.Close()
				return nil, interpretError(err)
			}
			if seq < last[key] && !claimed[key][seq] {
				gap[key] = true
			}
		}
		if err := res.Err(); err != nil {
			return nil, interpretError(err)
		}
		res.Close()
	}
	if len(gap) == 0 {
		return rows, nil
	}
	kept := rows[:0]
	for _, r := range rows {
		if !gap[r.Key] {
			kept = append(kept, r)
		}
	}
	return kept, nil
}

// normalizeIDs returns the canonical form of the valid UUIDs among ids (the
// form Insert stores); invalid ones cannot match any event and are dropped.
func normalizeIDs(ids []string) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if u, err := uuid.Parse(id); err == nil {
			out = append(out, u.String())
		}
	}
	return out
}

// execIDs runs query (which has an {IDS} list after the leading args) over
// ids in chunks, in one READ COMMITTED transaction, and returns the rows
// affected.
func (d *Driver) execIDs(ctx context.Context, query string, ids []string, lead ...any) (int64, error) {
	ids = normalizeIDs(ids)
	if len(ids) == 0 {
		return 0, nil
	}
	var total int64
	err := d.readCommitted(ctx, func(tx *sql.Tx) error {
		total = 0
		for start := 0; start < len(ids); start += maxIDsPerStatement {
			chunk := ids[start:min(start+maxIDsPerStatement, len(ids))]
			args := append(make([]any, 0, len(lead)+len(chunk)), lead...)
			for _, id := range chunk {
				args = append(args, id)
			}
			res, err := tx.ExecContext(ctx, withIDs(query, len(chunk)), args...)
			if err != nil {
				return interpretError(err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			total += n
		}
		return nil
	})
	return total, err
}

// EventExtendLeases implements outboxdriver.Driver.
func (d *Driver) EventExtendLeases(ctx context.Context, p *outboxdriver.EventExtendLeasesParams) (int64, error) {
	return d.execIDs(ctx, d.queries.extend, p.IDs, p.Lease.Microseconds(), p.RelayID)
}

// EventMarkDelivered implements outboxdriver.Driver.
func (d *Driver) EventMarkDelivered(ctx context.Context, p *outboxdriver.EventMarkDeliveredParams) (int64, error) {
	return d.execIDs(ctx, d.queries.markDelivered, p.IDs, p.RelayID)
}

// EventRelease implements outboxdriver.Driver.
func (d *Driver) EventRelease(ctx context.Context, p *outboxdriver.EventReleaseParams) (int64, error) {
	return d.execIDs(ctx, d.queries.release, p.IDs, p.RelayID)
}

// EventMarkFailed implements outboxdriver.Driver. Failures are rare and each
// has its own error and delay, so it runs one UPDATE per event (MySQL 8.0.1
// has no JSON_TABLE to join them in one), all in one transaction.
func (d *Driver) EventMarkFailed(ctx context.Context, p *outboxdriver.EventMarkFailedParams) (int64, error) {
	if len(p.Failures) == 0 {
		return 0, nil
	}
	var total int64
	err := d.readCommitted(ctx, func(tx *sql.Tx) error {
		total = 0
		for _, f := range p.Failures {
			u, err := uuid.Parse(f.ID)
			if err != nil {
				continue
			}
			res, err := tx.ExecContext(ctx, d.queries.markFailed,
				strings.ToValidUTF8(f.Error, "?"), f.Dead, max(f.Delay, 0).Microseconds(), f.Dead, u.String(), p.RelayID)
			if err != nil {
				return interpretError(err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			total += n
		}
		return nil
	})
	return total, err
}

// EventRetry implements outboxdriver.Driver.
func (d *Driver) EventRetry(ctx context.Context, p *outboxdriver.EventRetryParams) (int64, error) {
	if p.AllDead {
		var n int64
		err := d.readCommitted(ctx, func(tx *sql.Tx) error {
			var res sql.Result
			var err error
			if p.Type == "" {
				res, err = tx.ExecContext(ctx, d.queries.retryDead)
			} else {
				res, err = tx.ExecContext(ctx, d.queries.retryDeadType, p.Type)
			}
			if err != nil {
				return interpretError(err)
			}
			n, err = res.RowsAffected()
			return err
		})
		return n, err
	}
	return d.execIDs(ctx, d.queries.retryIDs, p.IDs)
}

// EventPurge implements outboxdriver.Driver.
func (d *Driver) EventPurge(ctx context.Context, p *outboxdriver.EventPurgeParams) (int64, error) {
	if p.Limit <= 0 {
		return 0, nil
	}
	var n int64
	err := d.readCommitted(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, d.queries.purge, p.Before.UTC(), p.Limit)
		if err != nil {
			return interpretError(err)
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
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
	u, err := uuid.Parse(p.ID)
	if err != nil {
		return nil, outboxdriver.ErrNotFound
	}
	return scanRow(d.db.QueryRowContext(ctx, d.queries.get, u.String()))
}

// EventList implements outboxdriver.Driver. The WHERE clause is assembled
// from fixed fragments (never from input) so that each filter can use an
// index instead of a catch-all "(? = ” OR col = ?)".
func (d *Driver) EventList(ctx context.Context, p *outboxdriver.EventListParams) ([]*outboxdriver.EventRow, error) {
	var b strings.Builder
	b.WriteString("SELECT " + columns + " FROM " + d.table + " WHERE seq > ?")
	args := []any{p.AfterSeq}
	if p.Status != "" {
		b.WriteString(" AND status = ?")
		args = append(args, string(p.Status))
	}
	if p.Type != "" {
		b.WriteString(" AND type = ?")
		args = append(args, p.Type)
	}
	if p.Key != "" {
		b.WriteString(" AND event_key = ?")
		args = append(args, p.Key)
	}
	if !p.Since.IsZero() {
		b.WriteString(" AND created_at >= ?")
		args = append(args, p.Since.UTC())
	}
	if !p.Until.IsZero() {
		b.WriteString(" AND created_at < ?")
		args = append(args, p.Until.UTC())
	}
	b.WriteString(" ORDER BY seq LIMIT ?")
	args = append(args, max(p.Limit, 0))
	rows, err := d.db.QueryContext(ctx, b.String(), args...)
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
