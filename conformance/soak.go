package conformance

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
	"github.com/outboxkit/outboxkit/framework/outboxtest/tcpproxy"
)

// SoakConfig configures RunSoak. Every zero field takes the default its
// comment gives.
type SoakConfig struct {
	// Duration is how long writers write and faults are injected; the final
	// drain comes on top. Zero means 15s.
	Duration time.Duration

	// Rate is how many events per second the writers commit, in
	// transactions of 5 events from 4 writers. Zero means 200.
	Rate int

	// BatchSize is the relay's BatchSize, which, times the relay's Concurrency, bounds the
	// duplicates one crash or one outage may cause. Zero means 100.
	BatchSize int

	// MaxRSS is the sanity bound on the relay subprocess's resident memory
	// (VmRSS), checked at the start and end of each relay generation. Zero
	// means 512 MiB. It is a leak alarm, not a performance target.
	MaxRSS int64
}

func (c SoakConfig) withDefaults() SoakConfig {
	c.Duration = cmp.Or(c.Duration, 15*time.Second)
	c.Rate = cmp.Or(c.Rate, 200)
	c.BatchSize = cmp.Or(c.BatchSize, 100)
	c.MaxRSS = cmp.Or(c.MaxRSS, 512<<20)
	return c
}

// RunSoak runs h's relay as a subprocess for cfg.Duration while writers
// commit at a steady rate, and at random moments either SIGKILLs the relay
// (and starts a new one) or cuts its broker connection (a tcpproxy) for up
// to two seconds. Then it lets the last relay drain and proves: no committed
// event lost (every one acknowledged and, read back, on the broker), at most
// BatchSize × Concurrency duplicates per crash and per outage, per-key order of first
// deliveries, and on a broker with native dedup one stored message per
// event. It logs the relay's resident memory at the start and end of each
// generation and fails only past cfg.MaxRSS.
//
// Like Run, call it from a plain test function: the relay subprocess
// re-executes the test binary with -test.run narrowed to the caller. The
// broker must be networked (Features.Networked and Addr); otherwise the test
// is skipped.
func RunSoak(t *testing.T, h Harness, cfg SoakConfig) {
	if runChildIfAsked(t, h) {
		return
	}
	outboxtest.RequireService(t, append(slices.Clone(h.Database.Services), h.Broker.Services...)...)
	if !h.Broker.Features.Networked || h.Broker.Addr == "" {
		t.Skipf("broker %s is not networked: the soak needs a subprocess relay and broker cuts", h.Broker.Name)
	}
	cfg = cfg.withDefaults()
	e := setup(t, h)
	proxy, err := tcpproxy.Start(h.Broker.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })

	dir := t.TempDir()
	jpath, logPath := filepath.Join(dir, "journal"), filepath.Join(dir, "relays.log")
	spec := childSpec{Test: t.Name(), Table: e.table, BrokerID: e.id, BrokerAddr: proxy.Addr(), Journal: jpath,
		BatchSize: cfg.BatchSize, Lease: 2 * time.Second,
		Role: "soak", PublishTimeout: time.Second, MaxAttempts: 100000, BackoffMax: 500 * time.Millisecond}

	w := e.soakWriters(t, cfg.Rate)
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	var gens []soakGen
	current := func() *soakGen { return &gens[len(gens)-1] }
	startGen := func() {
		spec.Gen = len(gens) + 1
		c := startChild(t, spec, logPath)
		gens = append(gens, soakGen{c: c, started: time.Now()})
		g := current()
		// Let the runtime settle before the first reading.
		time.Sleep(300 * time.Millisecond)
		g.rssStart = rssOf(c)
	}
	startGen()
	crashes, cuts := 0, 0
	for time.Now().Before(deadline) {
		time.Sleep(time.Duration(700+rand.IntN(1800)) * time.Millisecond)
		if !time.Now().Before(deadline) {
			break
		}
		if rand.IntN(2) == 0 {
			if rand.IntN(2) == 0 {
				// Kill the moment new acknowledgements appear: most likely
				// between publishing a batch and recording it.
				size := journalSize(jpath)
				for journalSize(jpath) == size && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
			}
			g := current()
			g.rssEnd = rssOf(g.c)
			g.c.kill()
			g.lifetime = time.Since(g.started)
			crashes++
			startGen()
			continue
		}
		mode := tcpproxy.Cut
		if rand.IntN(3) == 0 {
			mode = tcpproxy.Stall
		}
		if mode == tcpproxy.Cut {
			proxy.Cut()
		} else {
			proxy.Stall()
		}
		time.Sleep(time.Duration(300+rand.IntN(1700)) * time.Millisecond)
		proxy.Restore()
		cuts++
	}
	all, want := w.stop()
	writeTime := time.Since(start)

	drainDeadline := time.Now().Add(3 * time.Minute)
	for e.stats(t).Pending > 0 {
		if time.Now().After(drainDeadline) {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("the last relay did not drain the backlog in 3m; relay output:\n%s", tail(b, 4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	eventually(t, "every committed event on the broker", hangGuard, func() bool { return e.got.hasAll(all) })
	g := current()
	g.rssEnd = rssOf(g.c)
	g.lifetime = time.Since(g.started)
	g.c.stop()
	t.Logf("soak: %d events committed in %s (%.0f/s), %d relay SIGKILLs, %d broker cuts/stalls, drained %s after the writers stopped",
		len(all), writeTime.Round(time.Millisecond), float64(len(all))/writeTime.Seconds(), crashes, cuts,
		(time.Since(start) - writeTime).Round(time.Millisecond))

	for i, g := range gens {
		t.Logf("relay generation %d: VmRSS %s at start, %s at end, lived %s", i+1, fmtBytes(g.rssStart), fmtBytes(g.rssEnd), g.lifetime.Round(time.Millisecond))
		if g.rssStart > cfg.MaxRSS || g.rssEnd > cfg.MaxRSS {
			t.Errorf("relay generation %d: VmRSS %s / %s beyond the sanity bound %s", i+1, fmtBytes(g.rssStart), fmtBytes(g.rssEnd), fmtBytes(cfg.MaxRSS))
		}
	}

	entries := readJournal(t, jpath)
	pubs := map[string][]int{}
	for _, en := range entries {
		pubs[en.id] = append(pubs[en.id], en.gen)
	}
	var lost []string
	for _, id := range all {
		if len(pubs[id]) == 0 {
			lost = append(lost, id)
		}
	}
	if len(lost) > 0 {
		t.Fatalf("C2: %d of %d committed events were never acknowledged, e.g. %v", len(lost), len(all), lost[:min(5, len(lost))])
	}
	perCrash := map[int]int{}
	sameGen := 0
	for _, gs := range pubs {
		for i := 1; i < len(gs); i++ {
			if gs[i] == gs[i-1] {
				sameGen++ // a late acknowledgement after a PublishTimeout during an outage
				continue
			}
			perCrash[gs[i-1]]++
		}
	}
	// A crash or an outage loses the outcomes of the batches open at the
	// time: Concurrency of them.
	concurrency := cmp.Or(h.Concurrency, outbox.DefaultConcurrency)
	bound := cfg.BatchSize * concurrency
	for gen, n := range perCrash {
		if n > bound {
			t.Errorf("C3: the crash of relay generation %d caused %d duplicates, more than BatchSize %d × Concurrency %d", gen, n, cfg.BatchSize, concurrency)
		}
	}
	if sameGen > cuts*bound {
		t.Errorf("C3: %d duplicates without a crash, more than BatchSize %d × Concurrency %d per each of %d outages", sameGen, cfg.BatchSize, concurrency, cuts)
	}
	total, distinct := e.got.totals()
	t.Logf("C3: %d acknowledged publishes for %d events: duplicates per crashed generation %v, %d after outages; the broker stored %d messages",
		len(entries), len(all), perCrash, sameGen, total)
	if h.Broker.Features.NativeDedup && total != distinct {
		t.Errorf("C3: broker with native dedup stored %d messages for %d events", total, distinct)
	}
	if err := checkKeyOrder(want, firstOrder(entries, func(en journalEntry) (string, string) { return en.id, en.key })); err != nil {
		t.Errorf("C4 (first acknowledgements): %v", err)
	}
	if h.Broker.Features.PerKeyOrder {
		if err := checkKeyOrder(want, firstOrder(e.got.snapshot(), func(r Received) (string, string) { return r.UUID, r.Metadata[outbox.MetadataKey] })); err != nil {
			t.Errorf("C4 (broker order): %v", err)
		}
	}
	if s := e.stats(t); s.Dead != 0 {
		t.Errorf("%d events dead after the soak", s.Dead)
	}
}

// soakGen is one relay subprocess of the soak.
type soakGen struct {
	c                *child
	started          time.Time
	lifetime         time.Duration
	rssStart, rssEnd int64
}

// soakWriterSet is the soak's steady writers.
type soakWriterSet struct {
	stopCh chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	all    []string
	want   map[string][]string
}

// soakWriters starts 4 writers committing rate events per second in
// transactions of 5; each writer owns its keys, so per-key commit order is
// the writer's order.
func (e *env) soakWriters(t *testing.T, rate int) *soakWriterSet {
	const writers, perTx, keysPerWriter = 4, 5, 8
	w := &soakWriterSet{stopCh: make(chan struct{}), want: map[string][]string{}}
	interval := time.Duration(float64(time.Second) * writers * perTx / float64(rate))
	for wr := range writers {
		w.wg.Go(func() {
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-w.stopCh:
					return
				case <-tick.C:
				}
				var evs []*outbox.Event
				for j := range perTx {
					evs = append(evs, e.event(fmt.Sprintf("w%d-k%d", wr, (i*perTx+j)%keysPerWriter), i*perTx+j))
				}
				for {
					err := e.tryInsert(evs...)
					if err == nil {
						break
					}
					t.Logf("insert failed, retrying: %v", err)
					time.Sleep(100 * time.Millisecond)
				}
				w.mu.Lock()
				for _, ev := range evs {
					w.all = append(w.all, ev.ID)
					w.want[ev.Key] = append(w.want[ev.Key], ev.ID)
				}
				w.mu.Unlock()
			}
		})
	}
	return w
}

func (w *soakWriterSet) stop() (all []string, want map[string][]string) {
	close(w.stopCh)
	w.wg.Wait()
	return w.all, w.want
}

// rssOf returns the process's resident set size from /proc/<pid>/status
// (VmRSS), or -1 where it cannot be read (not Linux, process gone).
func rssOf(c *child) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest) // "12345 kB"
			if len(f) == 2 && f[1] == "kB" {
				if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					return kb << 10
				}
			}
		}
	}
	return -1
}

func fmtBytes(n int64) string {
	if n < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
