package conformance

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxtest/tcpproxy"
)

// C2 No loss: out-of-order commits, SIGKILLed relays, broker and database
// outages.
func c2Tests(cellTest string) []namedTest {
	return []namedTest{
		{"writers_commit_out_of_id_order", testOutOfOrderWriters},
		{"relay_SIGKILL_restart", func(t *testing.T, h Harness) { testSIGKILL(t, h, cellTest, false) }},
		{"relay_SIGKILL_standby_takes_over", func(t *testing.T, h Harness) { testSIGKILL(t, h, cellTest, true) }},
		{"broker_cut", func(t *testing.T, h Harness) { testBrokerOutage(t, h, tcpproxy.Cut) }},
		{"broker_stall", func(t *testing.T, h Harness) { testBrokerOutage(t, h, tcpproxy.Stall) }},
		{"database_cut", testDatabaseCut},
	}
}

func testOutOfOrderWriters(t *testing.T, h Harness) {
	if h.Database.SerialWriters {
		skipf(t, "database %s runs one write transaction at a time: commits cannot come out of id order", h.Database.Name)
	}
	e := setup(t, h)
	e.relay(nil, e.broker.NewPublisher(t, ""), outbox.RelayConfig{BatchSize: 50})
	const writers = 32
	perWriter := h.size(8, 25)
	var mu sync.Mutex
	var all []string
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				tx, err := e.db.Begin()
				if err != nil {
					t.Error(err)
					return
				}
				ev := e.event(fmt.Sprintf("w%d", w), i)
				if err := e.ob.Insert(context.Background(), tx, ev); err != nil {
					t.Error(err)
					_ = tx.Rollback()
					return
				}
				// Hold the transaction open: later ids commit first and the
				// relay sees gaps that fill in afterwards.
				time.Sleep(time.Duration(rand.IntN(40)) * time.Millisecond)
				if err := tx.Commit(); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				all = append(all, ev.ID)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	e.waitAllDelivered(t, all, hangGuard)
	total, distinct := e.got.totals()
	t.Logf("%d events committed by %d writers out of id order: %d distinct on the broker (%d messages)", len(all), writers, distinct, total)
}

// testSIGKILL drains a backlog with a relay running as a real subprocess,
// SIGKILLed at random points and restarted; it proves no loss (C2), counts
// the duplicates each crash caused and bounds them by BatchSize (C3), and
// checks per-key order of first deliveries across crashes (C4).
//
// With standby, the next relay starts before the running one is killed,
// so it is already there when that one dies: a second relay sharing the
// work (polling), or a hot standby waiting for the replication slot (CDC)
// that must take the stream over from a slot holder that was SIGKILLed.
func testSIGKILL(t *testing.T, h Harness, cellTest string, standby bool) {
	e := setup(t, h)
	n := h.size(3000, 20000)
	kills := h.size(3, 6)
	if standby {
		kills = h.size(2, 4)
	}
	const batch, keys = 100, 64
	lease := 2 * time.Second

	want := map[string][]string{}
	var all []string
	var chunk []*outbox.Event
	for i := range n {
		key := fmt.Sprintf("k%d", i%keys)
		ev := e.event(key, i)
		chunk = append(chunk, ev)
		if len(chunk) == 500 || i == n-1 {
			e.insert(t, chunk...)
			for _, c := range chunk {
				want[c.Key] = append(want[c.Key], c.ID)
				all = append(all, c.ID)
			}
			chunk = nil
		}
	}

	dir := t.TempDir()
	jpath, logPath := filepath.Join(dir, "journal"), filepath.Join(dir, "children.log")
	spec := childSpec{Test: cellTest, Table: e.table, BrokerID: e.id, Journal: jpath, BatchSize: batch, Lease: lease}
	killed := 0
	start := time.Now()
	var next *child
	for gen := 1; ; gen++ {
		spec.Gen = gen
		c := next
		if c == nil {
			c = startChild(t, spec, logPath)
		}
		next = nil
		if killed < kills && e.stats(t).Pending > 0 {
			if standby {
				// Once this relay publishes (it holds the slot, for CDC),
				// start the next one and give it time to connect and wait
				// behind it.
				deadline := time.Now().Add(hangGuard)
				for !journalHasGen(t, jpath, gen) && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
				spec.Gen = gen + 1
				next = startChild(t, spec, logPath)
				time.Sleep(300 * time.Millisecond)
			}
			// Wait until it publishes, let it claim, publish and mark for a
			// random while, then kill it wherever it is: mid-claim,
			// mid-publish or mid-mark.
			// Every other kill comes the moment new acknowledgements show up
			// in the journal, i.e. most likely between publishing a batch
			// and recording it: the duplicate-producing case.
			size := journalSize(jpath)
			deadline := time.Now().Add(hangGuard)
			for journalSize(jpath) == size && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if gen%2 == 0 {
				time.Sleep(time.Duration(rand.IntN(h.size(150, 400))) * time.Millisecond)
			}
			c.kill()
			killed++
			continue
		}
		deadline := time.Now().Add(3 * time.Minute)
		for e.stats(t).Pending > 0 {
			if time.Now().After(deadline) {
				c.kill()
				b, _ := os.ReadFile(logPath)
				t.Fatalf("subprocess relay did not drain the backlog; its output:\n%s", tail(b, 4000))
			}
			time.Sleep(50 * time.Millisecond)
		}
		c.stop()
		break
	}
	t.Logf("drained %d events in %s with %d SIGKILLs (lease %s, batch %d)", n, time.Since(start).Round(time.Millisecond), killed, lease, batch)

	entries := readJournal(t, jpath)
	pubs := map[string][]int{} // id -> generations that published it
	perGen := map[int]int{}
	for _, en := range entries {
		pubs[en.id] = append(pubs[en.id], en.gen)
		perGen[en.gen]++
	}
	var perGenList []int
	for g := 1; g <= killed+1; g++ {
		perGenList = append(perGenList, perGen[g])
	}
	t.Logf("acknowledged publishes per relay generation: %v", perGenList)
	var lost []string
	for _, id := range all {
		if len(pubs[id]) == 0 {
			lost = append(lost, id)
		}
	}
	if len(lost) > 0 {
		t.Fatalf("C2: %d of %d committed events were never acknowledged by the broker, e.g. %v", len(lost), n, lost[:min(5, len(lost))])
	}
	// Each extra publish is caused by the death of the generation that
	// published the event before it without recording the delivery.
	perCrash := map[int]int{}
	sameGen := 0
	for _, gens := range pubs {
		for i := 1; i < len(gens); i++ {
			if gens[i] == gens[i-1] {
				sameGen++
				continue
			}
			perCrash[gens[i-1]]++
		}
	}
	var perCrashList []int
	totalDup := 0
	// A crash loses the outcomes of the batches in flight: one, or
	// Concurrency of them.
	concurrency := cmp.Or(h.Concurrency, outbox.DefaultConcurrency)
	bound := batch * concurrency
	for g := 1; g <= killed; g++ {
		perCrashList = append(perCrashList, perCrash[g])
		totalDup += perCrash[g]
		if perCrash[g] > bound {
			t.Errorf("C3: crash of generation %d caused %d duplicates, more than BatchSize %d × Concurrency %d", g, perCrash[g], batch, concurrency)
		}
	}
	t.Logf("C3: relay-side duplicates per crash %v (total %d, bound %d each); duplicates without a crash: %d",
		perCrashList, totalDup, bound, sameGen)
	if sameGen > 0 {
		t.Errorf("C3: %d events published twice by the same live relay", sameGen)
	}
	if err := checkKeyOrder(want, firstOrder(entries, func(en journalEntry) (string, string) { return en.id, en.key })); err != nil {
		t.Errorf("C4 across crashes (first acknowledgements): %v", err)
	}

	if !h.Broker.Features.Networked {
		t.Logf("broker %s is in-memory: the subprocess's journal of acknowledged publishes is the evidence", h.Broker.Name)
		return
	}
	eventually(t, "every event on the broker", hangGuard, func() bool { return e.got.hasAll(all) })
	total, distinct := e.got.totals()
	t.Logf("broker stored %d messages for %d distinct events", total, distinct)
	if h.Broker.Features.NativeDedup && total != distinct {
		t.Errorf("C3: broker with native dedup stored %d messages for %d events", total, distinct)
	}
	if h.Broker.Features.PerKeyOrder {
		if err := checkKeyOrder(want, firstOrder(e.got.snapshot(), func(r Received) (string, string) { return r.UUID, r.Metadata[outbox.MetadataKey] })); err != nil {
			t.Errorf("C4 across crashes (broker order): %v", err)
		}
	}
}

// journalHasGen reports whether the journal at path holds a publish of
// relay generation gen.
func journalHasGen(t testing.TB, path string, gen int) bool {
	for _, en := range readJournal(t, path) {
		if en.gen == gen {
			return true
		}
	}
	return false
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// testBrokerOutage cuts (or black-holes) the relay's broker connection for a
// few seconds while events keep coming, then restores it.
func testBrokerOutage(t *testing.T, h Harness, mode tcpproxy.Mode) {
	if !h.Broker.Features.Networked {
		skipf(t, "broker %s is not networked: nothing to cut", h.Broker.Name)
	}
	e := setup(t, h)
	p := e.brokerProxy(t)
	var failures atomic.Int64
	e.relay(nil, e.broker.NewPublisher(t, p.Addr()), outbox.RelayConfig{
		BatchSize: 100, PublishTimeout: time.Second, MaxAttempts: 10000,
		BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond,
		Observer: func(o outbox.Outcome) {
			if o.Err != nil {
				failures.Add(1)
			}
		},
	})
	all := e.writeSteadily(t, h.size(1000, 4000), 40)
	outage := time.Duration(h.size(3, 4)) * time.Second
	eventually(t, "some events delivered before the outage", hangGuard, func() bool { _, d := e.got.totals(); return d > 0 })
	accepted := p.Accepted()
	_, before := e.got.totals()
	if mode == tcpproxy.Cut {
		p.Cut()
	} else {
		p.Stall()
	}
	time.Sleep(outage)
	_, during := e.got.totals()
	p.Restore()
	t.Logf("broker %s: %d events on the broker when it started, %d when it ended", mode, before, during)
	ids := all()
	e.waitAllDelivered(t, ids, hangGuard)
	if s := e.stats(t); s.Dead != 0 {
		t.Fatalf("%d events dead after a %s broker outage", s.Dead, outage)
	}
	total, distinct := e.got.totals()
	t.Logf("broker %s for %s: %d failed attempts, %d reconnects; %d events, %d messages on the broker",
		mode, outage, failures.Load(), p.Accepted()-accepted, distinct, total)
	switch {
	case mode == tcpproxy.Cut && p.Accepted() == accepted:
		t.Fatal("the publisher never reconnected: the cut did not happen")
	case mode == tcpproxy.Stall && failures.Load() == 0:
		t.Fatal("no publish failed while the broker was black-holed: the stall did not happen")
	}
}

// writeSteadily inserts n events in transactions of per events, spread over
// a few seconds, in the background; the returned func waits for the writer
// and returns the committed ids.
func (e *env) writeSteadily(t *testing.T, n, per int) func() []string {
	var ids []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < n; i += per {
			var evs []*outbox.Event
			for j := i; j < min(n, i+per); j++ {
				evs = append(evs, e.event(fmt.Sprintf("k%d", j%16), j))
			}
			// Writers use their own direct connection: the outage is the
			// relay's alone.
			for {
				err := e.tryInsert(evs...)
				if err == nil {
					break
				}
				t.Logf("insert failed, retrying: %v", err)
				time.Sleep(100 * time.Millisecond)
			}
			for _, ev := range evs {
				ids = append(ids, ev.ID)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return func() []string { <-done; return ids }
}

// testDatabaseCut cuts the relay's database connections for a few seconds
// while writers (on direct connections) keep committing.
func testDatabaseCut(t *testing.T, h Harness) {
	if h.Database.Addr == "" || h.Database.DSNVia == nil {
		skipf(t, "database %s: no Addr/DSNVia, cannot route it through a proxy", h.Database.Name)
	}
	e := setup(t, h)
	p, err := tcpproxy.Start(h.Database.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	relayDSN := h.Database.DSNVia(p.Addr())
	relayDB := openDB(t, h, relayDSN)
	drv := newDriverAt(t, h, relayDB, relayDSN, e.table)
	e.relay(drv, e.broker.NewPublisher(t, ""), outbox.RelayConfig{BatchSize: 100, LeaseDuration: 3 * time.Second})
	all := e.writeSteadily(t, h.size(1000, 4000), 40)
	eventually(t, "some events delivered before the outage", hangGuard, func() bool { _, d := e.got.totals(); return d > 0 })
	accepted := p.Accepted()
	outage := time.Duration(h.size(2, 4)) * time.Second
	_, before := e.got.totals()
	p.Cut()
	time.Sleep(outage)
	_, during := e.got.totals()
	p.Restore()
	t.Logf("database cut: %d events on the broker when it started, %d when it ended", before, during)
	ids := all()
	e.waitAllDelivered(t, ids, hangGuard)
	total, distinct := e.got.totals()
	t.Logf("database cut for %s: %d new relay connections afterwards; %d events, %d messages on the broker",
		outage, p.Accepted()-accepted, distinct, total)
	if p.Accepted() == accepted {
		t.Fatal("the relay never reconnected to the database: the cut did not happen")
	}
}

func journalSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
