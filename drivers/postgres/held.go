package postgres

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

var _ outboxdriver.HeldClaimer = (*Driver)(nil)

// EventClaimHeld implements outboxdriver.HeldClaimer. The transaction stays
// open until Finish or Abort; it holds row locks on the claimed events and
// advisory locks on their keys, none of which an INSERT ever waits for.
func (d *Driver) EventClaimHeld(ctx context.Context, p *outboxdriver.EventClaimBatchParams) (outboxdriver.HeldBatch, error) {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, interpretError(err)
	}
	if _, err := tx.ExecContext(ctx, d.queries.claimSession); err != nil {
		_ = tx.Rollback()
		return nil, interpretError(err)
	}
	rows, err := tx.QueryContext(ctx, d.queries.claimHeld, p.Limit, p.FromSeq, p.ScanLimit)
	if err != nil {
		_ = tx.Rollback()
		return nil, interpretError(err)
	}
	b := &heldBatch{d: d, tx: tx, seqs: map[string]int64{}}
	for rows.Next() {
		r := &outboxdriver.EventRow{Status: outboxdriver.StatusPending}
		if err := rows.Scan(&r.Seq, &r.ID, &r.Type, &r.Topic, &r.Key, &r.Payload, &r.Headers, &r.Attempts, &r.CreatedAt); err != nil {
			rows.Close()
			_ = tx.Rollback()
			return nil, interpretError(err)
		}
		b.rows = append(b.rows, r)
		b.seqs[r.ID] = r.Seq
	}
	if err := rows.Err(); err != nil {
		_ = tx.Rollback()
		return nil, interpretError(err)
	}
	sort.Slice(b.rows, func(i, j int) bool { return b.rows[i].Seq < b.rows[j].Seq })
	gaps, err := d.keysWithGaps(ctx, tx, b.rows)
	if err != nil {
		_ = tx.Rollback()
		return nil, err
	}
	var dropped []*outboxdriver.EventRow
	b.rows, dropped = withoutKeys(b.rows, gaps)
	for _, r := range dropped {
		delete(b.seqs, r.ID) // stays locked until the transaction ends, then pending
	}
	return b, nil
}

// keyClaim is one key of a claim, for the gap check.
type keyClaim struct {
	Key string `json:"key"`
	Seq int64  `json:"seq"` // the last claimed seq of the key
	N   int64  `json:"n"`   // how many rows of the key were claimed
}

// keysWithGaps returns the keys of rows (a claim, ordered by seq) that have
// a pending event, not claimed, before their last claimed one (see
// queries/claim_gaps.sql). The claim must leave those keys alone.
func (d *Driver) keysWithGaps(ctx context.Context, tx *sql.Tx, rows []*outboxdriver.EventRow) (map[string]bool, error) {
	byKey := map[string]*keyClaim{}
	var claims []*keyClaim
	for _, r := range rows {
		if r.Key == "" {
			continue
		}
		kc, ok := byKey[r.Key]
		if !ok {
			kc = &keyClaim{Key: r.Key}
			byKey[r.Key] = kc
			claims = append(claims, kc)
		}
		kc.Seq, kc.N = r.Seq, kc.N+1
	}
	if len(claims) == 0 {
		return nil, nil
	}
	raw, err := json.Marshal(claims)
	if err != nil {
		return nil, err
	}
	res, err := tx.QueryContext(ctx, d.queries.claimGaps, string(raw))
	if err != nil {
		return nil, interpretError(err)
	}
	defer res.Close()
	gaps := map[string]bool{}
	for res.Next() {
		var k string
		if err := res.Scan(&k); err != nil {
			return nil, interpretError(err)
		}
		gaps[k] = true
	}
	return gaps, interpretError(res.Err())
}

// withoutKeys returns rows minus those of the given keys.
func withoutKeys(rows []*outboxdriver.EventRow, keys map[string]bool) (kept, dropped []*outboxdriver.EventRow) {
	for _, r := range rows {
		if keys[r.Key] {
			dropped = append(dropped, r)
		} else {
			kept = append(kept, r)
		}
	}
	return kept, dropped
}

type heldBatch struct {
	d    *Driver
	tx   *sql.Tx
	rows []*outboxdriver.EventRow
	seqs map[string]int64 // id -> seq of the claimed rows
}

func (b *heldBatch) Rows() []*outboxdriver.EventRow { return b.rows }

func (b *heldBatch) Abort() error {
	if err := b.tx.Rollback(); err != nil && err != sql.ErrTxDone {
		return interpretError(err)
	}
	return nil
}

type heldFailure struct {
	Seq     int64  `json:"seq"`
	Err     string `json:"err"`
	DelayMS int64  `json:"delay_ms"`
	Dead    bool   `json:"dead"`
}

func (b *heldBatch) Finish(ctx context.Context, delivered []string, failed []outboxdriver.FailedAttempt) error {
	if len(delivered) > 0 {
		seqs := make([]string, 0, len(delivered))
		for _, id := range delivered {
			seq, ok := b.seqs[id]
			if !ok {
				return fmt.Errorf("postgres: event %s is not part of this batch", id)
			}
			seqs = append(seqs, strconv.FormatInt(seq, 10))
		}
		if _, err := b.tx.ExecContext(ctx, b.d.queries.markDelivered, strings.Join(seqs, ",")); err != nil {
			return interpretError(err)
		}
	}
	if len(failed) > 0 {
		fs := make([]heldFailure, 0, len(failed))
		for _, f := range failed {
			seq, ok := b.seqs[f.ID]
			if !ok {
				return fmt.Errorf("postgres: event %s is not part of this batch", f.ID)
			}
			fs = append(fs, heldFailure{Seq: seq, Err: strings.ReplaceAll(f.Error, "\x00", ""), DelayMS: f.Delay.Milliseconds(), Dead: f.Dead})
		}
		raw, err := json.Marshal(fs)
		if err != nil {
			return err
		}
		if _, err := b.tx.ExecContext(ctx, b.d.queries.markFailed, string(raw)); err != nil {
			return interpretError(err)
		}
	}
	return interpretError(b.tx.Commit())
}
