package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

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

// dropKeysWithGaps removes from a claim every key that has a pending event,
// not claimed, before its last claimed one. Under READ COMMITTED a locking
// read returns the newest committed rows but skips (SKIP LOCKED) the rows of
// a transaction still committing, so one scan can see part of a writer's
// transaction: without this check it could claim a key's later events and
// leave its earlier ones to another relay. This plain read runs after the
// scan, in a new statement, so it sees the whole commit. The claim holds
// the keys' named locks, so no other claim changes the answer.
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
		res, err := tx.QueryContext(ctx, withIDs(d.queries.claimGaps, len(chunk)), args...)
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

// EventRetry implements outboxdriver.Driver.
func (d *Driver) EventRetry(ctx context.Context, p *outboxdriver.EventRetryParams) (int64, error) {
	if p.AllDead {
		var n int64
		err := d.readCommitted(ctx, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, d.queries.retryDead, p.Type, p.Type)
			if err != nil {
				return interpretError(err)
			}
			n, err = res.RowsAffected()
			return err
		})
		return n, err
	}
	return d.execIDs(ctx, d.queries.retryIDs, p.IDs, p.Resend)
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

// listFilters are the conditions queries/list.sql.tmpl renders.
type listFilters struct {
	Table                                             string
	Status, Type, Key, Topic, LastError, Since, Until bool
}

// EventList implements outboxdriver.Driver. Its statement is rendered per
// call from the fixed conditions of queries/list.sql.tmpl (never from
// input), one per filter that is set, so that each can use an index.
func (d *Driver) EventList(ctx context.Context, p *outboxdriver.EventListParams) ([]*outboxdriver.EventRow, error) {
	f := listFilters{Table: d.table, Status: p.Status != "", Type: p.Type != "", Key: p.Key != "",
		Topic: p.Topic != "", LastError: p.LastError != "", Since: !p.Since.IsZero(), Until: !p.Until.IsZero()}
	args := []any{p.AfterSeq}
	for _, a := range []struct {
		on bool
		v  any
	}{{f.Status, string(p.Status)}, {f.Type, p.Type}, {f.Key, p.Key}, {f.Topic, p.Topic}, {f.LastError, p.LastError},
		{f.Since, p.Since.UTC()}, {f.Until, p.Until.UTC()}} {
		if a.on {
			args = append(args, a.v)
		}
	}
	args = append(args, max(p.Limit, 0))
	var query strings.Builder
	if err := d.listTmpl.Execute(&query, f); err != nil {
		return nil, fmt.Errorf("mysql: render list query: %w", err)
	}
	rows, err := d.db.QueryContext(ctx, query.String(), args...)
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
