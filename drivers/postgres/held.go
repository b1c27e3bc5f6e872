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

// heldQueries are the statements of the held-transaction claim.
type heldQueries struct{ claim, earlier, delivered, failed string }

// newHeldQueries renders the held-claim statements for one table. keySpace
// is the first half of the two-int advisory lock keys, so that keys of
// different outbox tables never share a lock.
func newHeldQueries(t string, keySpace int32, deleteDelivered bool) heldQueries {
	// $2 is EventClaimBatchParams.FromSeq (0: from the start).
	ready := readyQuery(t, strings.ReplaceAll(keyLocked, "{KS}", fmt.Sprint(keySpace)), " AND o.seq >= $2")
	r := strings.NewReplacer("{READY}", ready, "{T}", t)
	return heldQueries{
		// A transaction-scoped advisory lock per key keeps every other
		// claim away from the key's rows until this transaction ends; row
		// locks (FOR UPDATE SKIP LOCKED) hold the claimed rows. The NOT
		// EXISTS keeps a key's rows behind an earlier row in backoff.
		//
		// The scan tries a row's key lock before locking the row, so a
		// concurrent claim (another relay, or this relay's next batch while
		// one is being published) steps over the keys another claim holds,
		// without locking their rows, and takes the next free ones. The
		// lock function runs on each row the scan visits, so the scan must
		// be the ordered scan of the pending index that stops at the
		// limit: claimSession steers the plan to it (TestClaimPlan checks
		// it), as a sort would visit, and lock the key of, every pending row.
		claim: r.Replace(`
SELECT o.seq, o.id, o.type, o.topic, o.key, o.payload, o.headers, o.attempts, o.created_at FROM {T} o
{READY}
	FOR UPDATE OF o SKIP LOCKED`),
		// A key's advisory lock can be released by another relay's commit
		// while the claim scan runs, so the scan may skip a key's row (lock
		// busy) and take later ones (lock free again). Once the key's lock
		// is ours, this check (a fresh snapshot) counts the key's pending
		// rows up to the last claimed one: more than we claimed means a gap,
		// and the batch then leaves that key alone.
		earlier: r.Replace(`SELECT k.key FROM json_to_recordset($1::json) AS k(key text, seq bigint, n bigint)
WHERE (SELECT count(*) FROM {T} p WHERE p.status = 'pending' AND p.key = k.key AND p.seq <= k.seq) <> k.n`),
		delivered: r.Replace(markDelivered(deleteDelivered, `UPDATE {T} SET status = 'delivered', delivered_at = statement_timestamp(), attempts = attempts + 1`) + `
WHERE seq = ANY(string_to_array($1, ',')::bigint[])`),
		failed: r.Replace(`UPDATE {T} t SET attempts = t.attempts + 1, last_error = f.err,
	status = CASE WHEN f.dead THEN 'dead' ELSE 'pending' END,
	next_attempt_at = CASE WHEN f.dead THEN t.next_attempt_at
		ELSE statement_timestamp() + f.delay_ms * interval '1 millisecond' END
FROM json_to_recordset($1::json) AS f(seq bigint, err text, delay_ms bigint, dead boolean)
WHERE t.seq = f.seq`),
	}
}

// claimSession steers the claim's plan to the ordered scan of the pending
// index: on a table without statistics (fresh, or not yet analyzed) the
// planner otherwise sorts every pending row, which costs a full scan of the
// backlog on each claim.
const claimSession = "SET LOCAL enable_sort = off"

// EventClaimHeld implements outboxdriver.HeldClaimer. The transaction stays
// open until Finish or Abort; it holds row locks on the claimed events and
// advisory locks on their keys, none of which an INSERT ever waits for.
func (d *Driver) EventClaimHeld(ctx context.Context, p *outboxdriver.EventClaimBatchParams) (outboxdriver.HeldBatch, error) {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, interpretError(err)
	}
	if _, err := tx.ExecContext(ctx, claimSession); err != nil {
		_ = tx.Rollback()
		return nil, interpretError(err)
	}
	rows, err := tx.QueryContext(ctx, d.held.claim, p.Limit, p.FromSeq)
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
// heldQueries.earlier). The claim must leave those keys alone.
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
	res, err := tx.QueryContext(ctx, d.held.earlier, string(raw))
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
		if _, err := b.tx.ExecContext(ctx, b.d.held.delivered, strings.Join(seqs, ",")); err != nil {
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
		if _, err := b.tx.ExecContext(ctx, b.d.held.failed, string(raw)); err != nil {
			return interpretError(err)
		}
	}
	return interpretError(b.tx.Commit())
}
