package mysql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/crc32"
	"sort"
	"strings"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

var _ outboxdriver.HeldClaimer = (*Driver)(nil)

// keyLockPrefix is the prefix of the table's GET_LOCK names: "outboxkit:",
// a hash of the database and table, ":"; the MD5 of the key follows (64
// characters at most in all, MySQL's limit for lock names).
func keyLockPrefix(database, table string) string {
	return fmt.Sprintf("outboxkit:%08x:", crc32.ChecksumIEEE([]byte(database+"."+table)))
}

// EventClaimHeld implements outboxdriver.HeldClaimer. On a connection of its
// own, a READ COMMITTED transaction locks the claimed rows (record locks
// only, which an INSERT never waits for) and the session holds a named lock
// per key (GET_LOCK), both until Finish or Abort. A crashed relay's
// connection closes, which rolls its transaction back and frees its locks.
func (d *Driver) EventClaimHeld(ctx context.Context, p *outboxdriver.EventClaimBatchParams) (outboxdriver.HeldBatch, error) {
	prefix, err := d.lockPrefix(ctx)
	if err != nil {
		return nil, err
	}
	conn, err := d.db.Conn(ctx)
	if err != nil {
		return nil, interpretError(err)
	}
	b := &heldBatch{d: d, conn: conn, seqs: map[string]int64{}}
	b.tx, err = conn.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		b.end(ctx)
		return nil, interpretError(err)
	}
	if err := b.claim(ctx, prefix, p); err != nil {
		_ = b.Abort()
		return nil, err
	}
	return b, nil
}

// lockPrefix returns keyLockPrefix for the connection's database, read
// once.
func (d *Driver) lockPrefix(ctx context.Context) (string, error) {
	d.prefixMu.Lock()
	defer d.prefixMu.Unlock()
	if d.prefix == "" {
		var database sql.NullString
		if err := d.db.QueryRowContext(ctx, "SELECT DATABASE()").Scan(&database); err != nil {
			return "", interpretError(err)
		}
		d.prefix = keyLockPrefix(database.String, d.cfg.Table)
	}
	return d.prefix, nil
}

type heldBatch struct {
	d    *Driver
	conn *sql.Conn
	tx   *sql.Tx
	rows []*outboxdriver.EventRow
	seqs map[string]int64 // id -> seq of the claimed rows
}

func (b *heldBatch) claim(ctx context.Context, prefix string, p *outboxdriver.EventClaimBatchParams) error {
	if p.Limit <= 0 {
		return nil
	}
	var seqs []any
	rows, err := b.tx.QueryContext(ctx, b.d.queries.claimCandidates, candidateArgs(p, prefix)...)
	if err != nil {
		return interpretError(err)
	}
	defer rows.Close()
	for rows.Next() {
		var seq int64
		if err := rows.Scan(&seq); err != nil {
			return interpretError(err)
		}
		seqs = append(seqs, seq)
	}
	if err := rows.Err(); err != nil {
		return interpretError(err)
	}
	rows.Close()
	for start := 0; start < len(seqs); start += maxIDsPerStatement {
		chunk := seqs[start:min(start+maxIDsPerStatement, len(seqs))]
		if err := b.lockRows(ctx, chunk); err != nil {
			return err
		}
	}
	if len(b.rows) == 0 {
		return nil
	}
	// A key's named lock can be freed by another relay's commit while the
	// scan runs, a candidate's row can be locked by a transaction that takes
	// no named lock, and a key's earlier event can commit after the scan:
	// drop every key with an unclaimed pending event before its last
	// claimed one. Its rows stay locked, unclaimed, until the transaction
	// ends.
	if b.rows, err = b.d.dropKeysWithGaps(ctx, b.tx, b.rows); err != nil {
		return err
	}
	sort.Slice(b.rows, func(i, j int) bool { return b.rows[i].Seq < b.rows[j].Seq })
	for _, r := range b.rows {
		b.seqs[r.ID] = r.Seq
	}
	return nil
}

// lockRows locks the rows of seqs that are still pending and appends them.
func (b *heldBatch) lockRows(ctx context.Context, seqs []any) error {
	rows, err := b.tx.QueryContext(ctx, withIDs(b.d.queries.claimLock, len(seqs)), seqs...)
	if err != nil {
		return interpretError(err)
	}
	defer rows.Close()
	for rows.Next() {
		r := &outboxdriver.EventRow{Status: outboxdriver.StatusPending}
		if err := rows.Scan(&r.Seq, &r.ID, &r.Type, &r.Topic, &r.Key, &r.Payload, &r.Headers, &r.Attempts, &r.CreatedAt); err != nil {
			return interpretError(err)
		}
		b.rows = append(b.rows, r)
	}
	return interpretError(rows.Err())
}

func (b *heldBatch) Rows() []*outboxdriver.EventRow { return b.rows }

func (b *heldBatch) Finish(ctx context.Context, delivered []string, failed []outboxdriver.FailedAttempt) error {
	if err := b.record(ctx, delivered, failed); err != nil {
		_ = b.Abort()
		return err
	}
	err := b.tx.Commit()
	b.end(ctx)
	return interpretError(err)
}

func (b *heldBatch) record(ctx context.Context, delivered []string, failed []outboxdriver.FailedAttempt) error {
	seqs := make([]any, 0, len(delivered))
	for _, id := range delivered {
		seq, ok := b.seqs[id]
		if !ok {
			return fmt.Errorf("mysql: event %s is not part of this batch", id)
		}
		seqs = append(seqs, seq)
	}
	for start := 0; start < len(seqs); start += maxIDsPerStatement {
		chunk := seqs[start:min(start+maxIDsPerStatement, len(seqs))]
		if _, err := b.tx.ExecContext(ctx, withIDs(b.d.queries.markDelivered, len(chunk)), chunk...); err != nil {
			return interpretError(err)
		}
	}
	for _, f := range failed {
		seq, ok := b.seqs[f.ID]
		if !ok {
			return fmt.Errorf("mysql: event %s is not part of this batch", f.ID)
		}
		if _, err := b.tx.ExecContext(ctx, b.d.queries.markFailed,
			strings.ToValidUTF8(f.Error, "?"), f.Dead, max(f.Delay, 0).Microseconds(), f.Dead, seq); err != nil {
			return interpretError(err)
		}
	}
	return nil
}

func (b *heldBatch) Abort() error {
	if b.conn == nil {
		return nil
	}
	err := b.tx.Rollback()
	b.end(context.Background())
	if err != nil && !errors.Is(err, sql.ErrTxDone) {
		return interpretError(err)
	}
	return nil
}

// end frees the session's named locks and returns the connection to the
// pool; if the locks cannot be freed, the connection is closed instead
// (closing it frees them), so that no pooled connection keeps a key.
func (b *heldBatch) end(ctx context.Context) {
	if b.conn == nil {
		return
	}
	conn := b.conn
	b.conn = nil
	if _, err := conn.ExecContext(context.WithoutCancel(ctx), "DO RELEASE_ALL_LOCKS()"); err != nil {
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	}
	_ = conn.Close()
}

// candidateArgs returns the parameters of queries/claim_candidates.sql.
func candidateArgs(p *outboxdriver.EventClaimBatchParams, prefix string) []any {
	bounded := 0
	if p.ScanLimit > 0 {
		bounded = 1
	}
	return []any{p.FromSeq, p.FromSeq, max(p.ScanLimit-1, 0), bounded, prefix, p.Limit}
}
