package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// TestClaimSkippedEarlierRowHoldsBackItsKey: a claim skips (SKIP LOCKED) a
// row another transaction has locked; the key's later rows must not be
// claimed ahead of it, by either claim strategy.
func TestClaimSkippedEarlierRowHoldsBackItsKey(t *testing.T) {
	t.Parallel()
	claims := map[string]func(b *bundle) ([]string, func()){
		"held": func(b *bundle) ([]string, func()) {
			batch, err := b.drv.EventClaimHeld(context.Background(), &outboxdriver.EventClaimBatchParams{RelayID: "r", Limit: 10, Lease: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			return rowIDs(batch.Rows()), func() { _ = batch.Abort() }
		},
		"leased": func(b *bundle) ([]string, func()) {
			rows, err := b.drv.EventClaimBatch(context.Background(), &outboxdriver.EventClaimBatchParams{RelayID: "r", Limit: 10, Lease: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			return rowIDs(rows), func() {
				_, _ = b.drv.EventRelease(context.Background(), &outboxdriver.EventReleaseParams{RelayID: "r", IDs: rowIDs(rows)})
			}
		},
	}
	for name, claim := range claims {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			k := []*outbox.Event{ev("k", 0), ev("k", 1), ev("k", 2)}
			other := ev("other", 0)
			b.insert(t, append(k, other)...)

			tx, err := b.db.Begin()
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			if _, err := tx.Exec(fmt.Sprintf("SELECT 1 FROM %s WHERE id = $1 FOR UPDATE", b.drv.Table()), k[0].ID); err != nil {
				t.Fatal(err)
			}
			got, done := claim(b)
			if !slices.Equal(got, []string{other.ID}) {
				done()
				t.Fatalf("claimed %v while the key's first row was locked, want only %s", got, other.ID)
			}
			done()
			_ = tx.Rollback()

			got, done = claim(b)
			defer done()
			if want := []string{k[0].ID, k[1].ID, k[2].ID, other.ID}; !slices.Equal(got, want) {
				t.Fatalf("after the lock: claimed %v, want %v", got, want)
			}
		})
	}
}

func rowIDs(rows []*outboxdriver.EventRow) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.ID
	}
	return out
}

// TestConcurrentHeldClaimsTakeTheNextRows: while one held claim is open (a
// relay publishing its batch), a second claim (another relay, or the same
// relay's next batch with Concurrency > 1) steps over the held rows and
// takes the next ones whose keys are free, in seq order.
func TestConcurrentHeldClaimsTakeTheNextRows(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var evs []*outbox.Event
	for i := range 4 {
		for _, k := range []string{"a", "b", "c", "d"} {
			evs = append(evs, ev(k, i))
		}
	}
	b.insert(t, evs...)
	claim := func(limit int) outboxdriver.HeldBatch {
		batch, err := b.drv.EventClaimHeld(context.Background(), &outboxdriver.EventClaimBatchParams{RelayID: "r", Limit: limit})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = batch.Abort() })
		return batch
	}
	first := claim(2) // a/0 b/0: keys a and b are held
	if want := []string{evs[0].ID, evs[1].ID}; !slices.Equal(rowIDs(first.Rows()), want) {
		t.Fatalf("first claim %v, want %v", rowIDs(first.Rows()), want)
	}
	// The next rows in seq order are c/0 d/0 a/1 b/1 c/1 d/1 ...: the
	// second claim steps over a and b's rows and takes c and d's.
	second := claim(4)
	if want := []string{evs[2].ID, evs[3].ID, evs[6].ID, evs[7].ID}; !slices.Equal(rowIDs(second.Rows()), want) {
		t.Fatalf("second claim %v, want c/0 d/0 c/1 d/1 %v", rowIDs(second.Rows()), want)
	}
	// Finishing the first batch frees a and b; a third claim takes their
	// next rows while the second claim still holds c and d.
	if err := first.Finish(context.Background(), rowIDs(first.Rows()), nil); err != nil {
		t.Fatal(err)
	}
	third := claim(2)
	if want := []string{evs[4].ID, evs[5].ID}; !slices.Equal(rowIDs(third.Rows()), want) {
		t.Fatalf("third claim %v, want a/1 b/1 %v", rowIDs(third.Rows()), want)
	}
}

// TestClaimPlan checks the held claim's plan on a backlog, before and after
// ANALYZE: the ordered scan of the partial pending index under LockRows and
// Limit, so that the scan, and the key lock it tries on each row it visits,
// stops at the batch size; no sort, no scan of the table.
func TestClaimPlan(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if _, err := b.db.Exec(fmt.Sprintf(`INSERT INTO %s (id, type, topic, key, payload)
SELECT gen_random_uuid(), 't', 'topic', (g %% 1000)::text, '\x00' FROM generate_series(1, 20000) g`, b.drv.Table())); err != nil {
		t.Fatal(err)
	}
	session, claim := b.drv.HeldClaimQuery()
	for _, stage := range []string{"fresh table", "after ANALYZE"} {
		if stage == "after ANALYZE" {
			if _, err := b.db.Exec("ANALYZE " + b.drv.Table()); err != nil {
				t.Fatal(err)
			}
		}
		tx, err := b.db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(session); err != nil {
			t.Fatal(err)
		}
		rows, err := tx.Query("EXPLAIN (COSTS OFF) "+claim, 100, 0)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, line)
		}
		_ = tx.Rollback()
		text := strings.Join(plan, "\n")
		t.Logf("%s:\n%s", stage, text)
		// The claim's scan, without the NOT EXISTS subplan.
		cte, _, _ := strings.Cut(text, "SubPlan")
		want := []string{"Limit", "LockRows", "Index Scan using"}
		last := -1
		for _, node := range want {
			i := strings.Index(cte, node)
			if i <= last {
				t.Fatalf("%s: the claim's scan is not %q in that order:\n%s", stage, want, text)
			}
			last = i
		}
		// Either index gives the pending rows in seq order: the partial
		// pending index, or (status, seq) from status 'pending' on.
		if !strings.Contains(cte, b.table+"_pending_idx") &&
			!(strings.Contains(cte, b.table+"_status_idx") && strings.Contains(strings.ReplaceAll(cte, "((", "("), "Index Cond: (status = 'pending'::text)")) {
			t.Fatalf("%s: the claim does not scan pending rows by index:\n%s", stage, text)
		}
		for _, bad := range []string{"Sort", "Seq Scan", "Bitmap"} {
			if strings.Contains(cte, bad) {
				t.Fatalf("%s: %s in the claim's scan:\n%s", stage, bad, text)
			}
		}
	}
}

// TestClaimFromSeq: a held claim with FromSeq leaves the events below it.
func TestClaimFromSeq(t *testing.T) {
	t.Parallel()
	b := setup(t)
	evs := []*outbox.Event{ev("a", 0), ev("b", 0), ev("c", 0), ev("d", 0)}
	b.insert(t, evs...)
	all, err := b.drv.EventClaimHeld(context.Background(), &outboxdriver.EventClaimBatchParams{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	from := all.Rows()[2].Seq
	_ = all.Abort()
	batch, err := b.drv.EventClaimHeld(context.Background(), &outboxdriver.EventClaimBatchParams{Limit: 10, FromSeq: from})
	if err != nil {
		t.Fatal(err)
	}
	defer batch.Abort()
	if got, want := rowIDs(batch.Rows()), []string{evs[2].ID, evs[3].ID}; !slices.Equal(got, want) {
		t.Fatalf("claimed %v from seq %d, want c d %v", got, from, want)
	}
}
