package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// TestClaimSkippedEarlierRowHoldsBackItsKey: a claim skips (SKIP LOCKED) a
// row another transaction has locked (here an operator's SELECT ... FOR
// UPDATE, which takes no advisory lock); the key's later rows must not be
// claimed ahead of it.
func TestClaimSkippedEarlierRowHoldsBackItsKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	claim := func() ([]string, func()) {
		batch, err := b.drv.EventClaimHeld(context.Background(), &outboxdriver.EventClaimBatchParams{RelayID: "r", Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		return rowIDs(batch.Rows()), func() { _ = batch.Abort() }
	}
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
	got, done := claim()
	if !slices.Equal(got, []string{other.ID}) {
		done()
		t.Fatalf("claimed %v while the key's first row was locked, want only %s", got, other.ID)
	}
	done()
	_ = tx.Rollback()

	got, done = claim()
	defer done()
	if want := []string{k[0].ID, k[1].ID, k[2].ID, other.ID}; !slices.Equal(got, want) {
		t.Fatalf("after the lock: claimed %v, want %v", got, want)
	}
}

func rowIDs(rows []*outboxdriver.EventRow) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.ID
	}
	return out
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
	for _, stage := range []string{"fresh table", "after ANALYZE", "bounded scan"} {
		scanLimit := 0
		if stage == "bounded scan" {
			scanLimit = 2000 // a claim while another batch is open (ScanLimit)
		}
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
		rows, err := tx.Query("EXPLAIN (COSTS OFF) "+claim, 100, 0, scanLimit)
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
		// The partial pending index gives the pending rows in seq order.
		if !strings.Contains(cte, b.table+"_pending_idx") {
			t.Fatalf("%s: the claim does not scan pending rows by index:\n%s", stage, text)
		}
		// The per-key backoff check reads the partial "inplay" index.
		if _, sub, _ := strings.Cut(text, "SubPlan"); !strings.Contains(sub, "Index Scan using "+b.table+"_inplay_idx") {
			t.Fatalf("%s: the key check does not read the inplay index:\n%s", stage, text)
		}
		for _, bad := range []string{"Sort", "Seq Scan", "Bitmap"} {
			if strings.Contains(cte, bad) {
				t.Fatalf("%s: %s in the claim's scan:\n%s", stage, bad, text)
			}
		}
	}
}

// TestClaimGapsPlan checks that the held claim's gap check reads the
// pending_key index with a plain index scan, which marks the entries of
// delivered events dead in the index as it meets them, so that the next
// claims step over them without reading the table; a bitmap scan fetched
// the table page of every delivered event of the key on every claim.
func TestClaimGapsPlan(t *testing.T) {
	t.Parallel()
	b := setup(t)
	table := b.drv.Table()
	for _, stmt := range []string{
		fmt.Sprintf(`INSERT INTO %s (id, type, topic, key, payload)
SELECT gen_random_uuid(), 't', 'topic', 'k' || (g %% 400), '\x00' FROM generate_series(1, 8000) g`, table),
		"ANALYZE " + table,
		// The first 4000 delivered: 10 dead pending_key entries per key.
		fmt.Sprintf(`UPDATE %s SET status = 'delivered', delivered_at = now() WHERE seq <= 4000`, table),
	} {
		if _, err := b.db.Exec(stmt); err != nil {
			t.Fatal(err)
		}
	}
	// A claim of the next event of each key.
	var keys []string
	for k := 0; k < 400; k++ {
		seq := 4001 + k
		keys = append(keys, fmt.Sprintf(`{"key":"k%d","seq":%d,"n":1}`, seq%400, seq))
	}
	arg := "[" + strings.Join(keys, ",") + "]"
	session, _ := b.drv.HeldClaimQuery()
	// check runs the gap check in a claim's transaction and returns its
	// plan and how many table rows it read.
	check := func() (string, int) {
		tx, err := b.db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		if _, err := tx.Exec(session); err != nil {
			t.Fatal(err)
		}
		rows, err := tx.Query("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) "+b.drv.ClaimGapsQuery(), arg)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var plan []string
		fetches := -1
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, line)
			if _, n, ok := strings.Cut(line, "Heap Fetches: "); ok {
				fetches, _ = strconv.Atoi(strings.TrimSpace(n))
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return strings.Join(plan, "\n"), fetches
	}
	first, fetches := check()
	t.Logf("first check:\n%s", first)
	if strings.Contains(first, "Bitmap") || !strings.Contains(first, "Index Only Scan using "+b.table+"_pending_key_idx") {
		t.Fatalf("the gap check does not read the pending_key index with an index-only scan:\n%s", first)
	}
	if fetches < 400 {
		t.Fatalf("the first check read %d table rows, fewer than the 400 claimed ones:\n%s", fetches, first)
	}
	// An index entry is marked dead once its row version is dead to every
	// transaction, which other tests' open transactions on the server may
	// delay. Then only the 400 live (claimed) rows are still read from the
	// table, not the 4000 delivered ones.
	var plan string
	defer func() {
		if t.Failed() {
			t.Logf("last check:\n%s", plan)
		}
	}()
	eventually(t, "the gap check to read no more than the 400 claimed rows from the table", func() bool {
		plan, fetches = check()
		return fetches <= 400
	})
}
