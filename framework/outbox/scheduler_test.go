package outbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// scriptedBroker is an AsyncPublisher whose acknowledgements arrive after a
// random delay, in any order. It fails the publish of the ids in fail, and
// records what per-key order needs checked: a key's publish must never
// start while an earlier one of the key is unsettled.
type scriptedBroker struct {
	recordingPublisher
	fail map[string]bool

	mu          sync.Mutex
	inFlight    map[string]int // key -> publishes started and not yet waited for
	maxInFlight int
	started     []string // ids in start order
	violations  []string
}

func newScriptedBroker(fail ...string) *scriptedBroker {
	b := &scriptedBroker{fail: map[string]bool{}, inFlight: map[string]int{}}
	for _, id := range fail {
		b.fail[id] = true
	}
	return b
}

func (b *scriptedBroker) PublishAsync(_ string, msg *message.Message) (func(context.Context) error, error) {
	key := msg.Metadata.Get(MetadataKey)
	b.mu.Lock()
	b.started = append(b.started, msg.UUID)
	if key != "" && b.inFlight[key] > 0 {
		b.violations = append(b.violations, fmt.Sprintf("%s started while an earlier event of key %q was unsettled", msg.UUID, key))
	}
	b.inFlight[key]++
	b.maxInFlight = max(b.maxInFlight, b.total())
	b.mu.Unlock()
	answer := make(chan error, 1)
	time.AfterFunc(time.Duration(rand.IntN(300))*time.Microsecond, func() {
		if b.fail[msg.UUID] {
			answer <- errors.New("broker refused " + msg.UUID + "\nstack")
			return
		}
		answer <- nil
	})
	return func(ctx context.Context) error {
		defer func() {
			b.mu.Lock()
			b.inFlight[key]--
			b.mu.Unlock()
		}()
		select {
		case err := <-answer:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}, nil
}

func (b *scriptedBroker) total() int {
	n := 0
	for _, v := range b.inFlight {
		n += v
	}
	return n
}

// testRelay is a Relay without a database, for the scheduler.
func testRelay(pub message.Publisher, cfg RelayConfig) *Relay {
	cfg = cfg.withDefaults()
	r := &Relay{publisher: pub, cfg: cfg, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	r.backoff.Min, r.backoff.Max = cfg.BackoffMin, cfg.BackoffMax
	return r
}

// schedule runs the scheduler over the async path of pub, as Run sets it
// up without a database: it hands in every batch at once and returns them
// with their outcomes once each is done. Cancelling ctx stops it as Run's
// context does (in-flight publishes aborted ShutdownTimeout later).
func schedule(ctx context.Context, pub AsyncPublisher, cfg RelayConfig, batches ...[]*outboxdriver.EventRow) []*claimedBatch {
	r := testRelay(pub, cfg)
	path := newAsyncPath(pub, r.cfg.PublishTimeout, r.window())
	defer path.close()
	hardCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(r.cfg.ShutdownTimeout, cancel) })
	defer stop()
	s := newScheduler(r, path, r.window())
	var out []*claimedBatch
	var mu sync.Mutex
	var wg sync.WaitGroup
	wg.Go(func() { s.run(ctx, hardCtx) })
	for _, rows := range batches {
		s.in <- &claimedBatch{rows: rows, done: func(b *claimedBatch) { mu.Lock(); out = append(out, b); mu.Unlock() }}
	}
	close(s.in)
	wg.Wait()
	return out
}

// publishOne is schedule for one batch.
func publishOne(ctx context.Context, pub AsyncPublisher, cfg RelayConfig, rows []*outboxdriver.EventRow) *claimedBatch {
	return schedule(ctx, pub, cfg, rows)[0]
}

// rowsOf returns perKey events for each of keys, interleaved as a claim
// returns them (seq order), with ids "<key>/<i>".
func rowsOf(keys []string, perKey int) []*outboxdriver.EventRow {
	var rows []*outboxdriver.EventRow
	for i := range perKey {
		for _, k := range keys {
			rows = append(rows, &outboxdriver.EventRow{ID: fmt.Sprintf("%s/%d", k, i), Type: "t", Topic: "topic", Key: k, Payload: []byte("p"), Headers: []byte("{}")})
		}
	}
	return rows
}

func TestScheduler(t *testing.T) {
	t.Parallel()
	keys := []string{"a", "b", "c", "", ""}

	t.Run("KeyOrderAndEveryOutcome", func(t *testing.T) {
		t.Parallel()
		b := newScriptedBroker()
		rows := rowsOf(keys, 40)
		res := publishOne(context.Background(), b, RelayConfig{}, rows)
		if len(b.violations) > 0 {
			t.Fatalf("per-key order: %v", b.violations[:min(3, len(b.violations))])
		}
		if len(res.delivered) != len(rows) || len(res.failed) != 0 || len(res.released) != 0 {
			t.Fatalf("delivered %d failed %d released %d, want all %d delivered", len(res.delivered), len(res.failed), len(res.released), len(rows))
		}
		// Keyless events do not wait for each other: all 80 start in the
		// first wave, with the heads of a, b and c.
		for _, id := range b.started[:83] {
			if id == "a/1" || id == "b/1" || id == "c/1" {
				t.Fatalf("%s started in the first wave, before all 83 events that can go at once: %v", id, b.started[:83])
			}
		}
	})

	t.Run("FailureReleasesTheKeysLaterEvents", func(t *testing.T) {
		t.Parallel()
		b := newScriptedBroker("b/1")
		res := publishOne(context.Background(), b, RelayConfig{}, rowsOf(keys, 4))
		if len(res.failed) != 1 || res.failed[0].ID != "b/1" || res.failed[0].Dead || res.failed[0].Delay <= 0 {
			t.Fatalf("failed %+v, want b/1 pending with a retry delay", res.failed)
		}
		if res.failed[0].Error != "broker refused b/1" {
			t.Fatalf("last_error %q, want the broker's first line", res.failed[0].Error)
		}
		if !slices.Equal(res.released, []string{"b/2", "b/3"}) {
			t.Fatalf("released %v, want b/2 b/3", res.released)
		}
		if slices.Contains(b.started, "b/2") {
			t.Fatal("b/2 was published after b/1 failed")
		}
		if len(res.delivered) != 20-3 {
			t.Fatalf("delivered %d, want 17", len(res.delivered))
		}
	})

	t.Run("DeadEventDoesNotHoldItsKeyBack", func(t *testing.T) {
		t.Parallel()
		b := newScriptedBroker("a/0")
		res := publishOne(context.Background(), b, RelayConfig{MaxAttempts: 1}, rowsOf([]string{"a"}, 3))
		if len(res.failed) != 1 || !res.failed[0].Dead || !slices.Equal(res.delivered, []string{"a/1", "a/2"}) {
			t.Fatalf("failed %+v delivered %v, want a/0 dead then a/1 a/2 delivered", res.failed, res.delivered)
		}
	})

	t.Run("UnreadableRowIsDeadAndItsKeyGoesOn", func(t *testing.T) {
		t.Parallel()
		rows := rowsOf([]string{"a"}, 3)
		rows[0].Topic = ""
		res := publishOne(context.Background(), newScriptedBroker(), RelayConfig{}, rows)
		if len(res.failed) != 1 || !res.failed[0].Dead || !slices.Equal(res.delivered, []string{"a/1", "a/2"}) {
			t.Fatalf("failed %+v delivered %v, want a/0 dead then a/1 a/2 delivered", res.failed, res.delivered)
		}
	})

	t.Run("StartErrorIsAFailedAttempt", func(t *testing.T) {
		t.Parallel()
		p := &asyncPublisher{startErr: errors.New("nats: invalid subject")}
		res := publishOne(context.Background(), p, RelayConfig{}, rowsOf([]string{"a"}, 2))
		if len(res.failed) != 1 || res.failed[0].Error != "nats: invalid subject" || !slices.Equal(res.released, []string{"a/1"}) {
			t.Fatalf("failed %+v released %v", res.failed, res.released)
		}
	})

	t.Run("WindowBoundsPublishesInFlight", func(t *testing.T) {
		t.Parallel()
		var many []string
		for i := range 3 * 200 {
			many = append(many, fmt.Sprint("k", i))
		}
		b := newScriptedBroker()
		res := publishOne(context.Background(), b, RelayConfig{BatchSize: 100, Concurrency: 2}, rowsOf(many, 1))
		if len(res.delivered) != len(many) {
			t.Fatalf("delivered %d of %d", len(res.delivered), len(many))
		}
		if b.maxInFlight > 200 {
			t.Fatalf("%d publishes in flight, window is BatchSize x Concurrency = 200", b.maxInFlight)
		}
	})

	t.Run("StoppingReleasesWhatDidNotStart", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		b := newScriptedBroker()
		res := publishOne(ctx, b, RelayConfig{}, rowsOf([]string{"a", "b"}, 2))
		if len(b.started) != 0 || len(res.released) != 4 {
			t.Fatalf("started %v released %v, want nothing started and all 4 released", b.started, res.released)
		}
	})

	t.Run("NoAckUntilHardStopReleasesInFlight", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(10*time.Millisecond, cancel)
		res := publishOne(ctx, &asyncPublisher{}, RelayConfig{ShutdownTimeout: 20 * time.Millisecond}, rowsOf([]string{"a"}, 3))
		if len(res.delivered)+len(res.failed) != 0 || !slices.Equal(res.released, []string{"a/0", "a/1", "a/2"}) {
			t.Fatalf("delivered %v failed %v released %v, want all released (outcome unknown)", res.delivered, res.failed, res.released)
		}
	})
}

func TestScanHint(t *testing.T) {
	t.Parallel()
	batch := func(first int64) *claimedBatch {
		return &claimedBatch{rows: []*outboxdriver.EventRow{{Seq: first}, {Seq: first + 499}}}
	}
	const limit = 2 // the batches above are full
	var h scanHint
	if h.from() != 0 {
		t.Fatal("a new relay claims from the start")
	}
	b1 := batch(1)
	h.claimed(0, limit, b1, false)
	if h.from() != 1 {
		t.Fatalf("batch 1 (1..500) open: from %d, want 1", h.from())
	}
	// Claimed while batch 1 was open: it stepped over batch 1's keys, so
	// their later events may lie anywhere in 1..1500.
	b2 := batch(1001)
	h.claimed(1, limit, b2, false)
	h.closedBatch(b1)
	if h.from() != 1 {
		t.Fatalf("batch 1 closed, batch 2 open: from %d, want 1 (what batch 2's claim stepped over)", h.from())
	}
	// A claim from 1 that took 501..1000 (limit reached at 1000) did not
	// scan past 1500: the region stays, and its own step over batch 2
	// adds 1001..1000.
	b3 := batch(501)
	h.claimed(1, limit, b3, false)
	if h.from() != 1 {
		t.Fatalf("the region 1..1500 is not scanned through yet: from %d, want 1", h.from())
	}
	b4 := batch(1501)
	h.claimed(1, limit, b4, false) // scanned 1..2000: through the region
	h.closedBatch(b2)
	h.closedBatch(b3)
	h.closedBatch(b4)
	if got := h.from(); got != 501 {
		t.Fatalf("every batch closed: from %d, want 501 (the step over batches 2 and 3 in the last claim)", got)
	}
	h.claimed(501, limit, nil, false) // scanned to the end, nothing open
	if h.from() != 1501 {
		t.Fatalf("nothing open, nothing left behind: from %d, want the last batch's first event 1501", h.from())
	}
	h.fromZero = time.Now().Add(-rescanEvery)
	if h.from() != 0 {
		t.Fatalf("a hint older than rescanEvery: from %d, want a claim from the start", h.from())
	}
	h.claimed(0, limit, nil, false)
	if h.from() != 1501 {
		t.Fatalf("after the claim from the start: from %d, want the hint again", h.from())
	}
}

// TestScanHintBounded: a claim with a ScanLimit that took fewer events than
// it could stopped at a point it does not know, so it scanned through no
// region beyond its last event; an unbounded one scanned to the end.
func TestScanHintBounded(t *testing.T) {
	t.Parallel()
	batch := func(first int64) *claimedBatch {
		return &claimedBatch{rows: []*outboxdriver.EventRow{{Seq: first}, {Seq: first + 499}}}
	}
	const limit = 2
	var h scanHint
	h.from()
	b1 := batch(1)
	h.claimed(0, limit, b1, false)
	h.from()
	b2 := batch(1001)
	h.claimed(1, limit, b2, false) // stepped over b1's keys: region 1..1500
	h.closedBatch(b1)
	h.closedBatch(b2)
	if got := h.from(); got != 1 {
		t.Fatalf("region 1..1500 left: from %d, want 1", got)
	}
	h.claimed(1, limit, nil, true)
	if got := h.from(); got != 1 {
		t.Fatalf("after a bounded claim that found nothing: from %d, want 1 (the region stays)", got)
	}
	b3 := &claimedBatch{rows: []*outboxdriver.EventRow{{Seq: 2}}}
	h.claimed(1, limit, b3, true)
	h.closedBatch(b3)
	if got := h.from(); got != 1 {
		t.Fatalf("after a bounded claim that took one event at 2: from %d, want 1 (the region stays)", got)
	}
	h.claimed(1, limit, nil, false)
	if got := h.from(); got != 2 {
		t.Fatalf("after an unbounded claim that found nothing: from %d, want 2 (the last batch's first event)", got)
	}
}

// gatedBroker is an AsyncPublisher that acknowledges at once, except the
// ids in hold, which wait until gate is closed (or their wait's ctx ends).
type gatedBroker struct {
	recordingPublisher
	hold map[string]bool
	gate chan struct{}
}

func (b *gatedBroker) PublishAsync(_ string, msg *message.Message) (func(context.Context) error, error) {
	held := b.hold[msg.UUID]
	return func(ctx context.Context) error {
		if !held {
			return nil
		}
		select {
		case <-b.gate:
			return errors.New("broker refused " + msg.UUID)
		case <-ctx.Done():
			return ctx.Err()
		}
	}, nil
}

func TestSchedulerPoisonIsolation(t *testing.T) {
	t.Parallel()

	t.Run("SlowFailureHoldsBackItsKeyOnly", func(t *testing.T) {
		t.Parallel()
		// Batch 1 holds a poison event that takes long to fail; batch 2,
		// handed in after it, must be done (its outcomes recordable)
		// before the poison fails, and so must batch 1's other keys.
		b := &gatedBroker{hold: map[string]bool{"p/0": true}, gate: make(chan struct{})}
		var out []*claimedBatch
		done := make(chan struct{})
		go func() {
			defer close(done)
			out = schedule(context.Background(), b, RelayConfig{}, rowsOf([]string{"p", "x"}, 2), rowsOf([]string{"y", "z"}, 3))
		}()
		// schedule returns only once every batch is done; the poison's
		// batch cannot be, so wait for batch 2 through the broker: all of
		// its events and x's are acknowledged while p/0 still hangs.
		time.Sleep(50 * time.Millisecond)
		close(b.gate)
		<-done
		if len(out) != 2 {
			t.Fatalf("%d batches done, want 2", len(out))
		}
		if !slices.Equal(idsOf(out[0].rows), idsOf(rowsOf([]string{"y", "z"}, 3))) {
			t.Fatalf("first batch done: %v, want the second batch (the poison's batch must not hold it back)", idsOf(out[0].rows))
		}
		poison := out[1]
		if len(poison.failed) != 1 || poison.failed[0].ID != "p/0" || !slices.Equal(poison.released, []string{"p/1"}) ||
			!slices.Equal(poison.delivered, []string{"x/0", "x/1"}) {
			t.Fatalf("poison batch: delivered %v failed %+v released %v", poison.delivered, poison.failed, poison.released)
		}
	})

	t.Run("RepeatedFailuresNeverReachOtherKeys", func(t *testing.T) {
		t.Parallel()
		// Three poison keys in every batch of a stream of batches: every
		// other event is delivered, and each poison key's later events
		// are released, never attempted.
		b := newScriptedBroker()
		// Open batches never share a key (the claim protocols exclude the
		// keys of open batches), so each batch has keys of its own.
		var batches [][]*outboxdriver.EventRow
		for i := range 5 {
			k := fmt.Sprint(i)
			b.fail["p1"+k+"/0"], b.fail["p2"+k+"/0"], b.fail["p3"+k+"/0"] = true, true, true
			batches = append(batches, rowsOf([]string{"p1" + k, "a" + k, "p2" + k, "b" + k, "p3" + k, "c" + k}, 3))
		}
		for _, got := range schedule(context.Background(), b, RelayConfig{}, batches...) {
			if len(got.delivered) != 9 || len(got.failed) != 3 || len(got.released) != 6 {
				t.Fatalf("delivered %v failed %+v released %v, want a, b, c delivered, p*/0 failed, p*/1-2 released",
					got.delivered, got.failed, got.released)
			}
		}
		if len(b.violations) > 0 {
			t.Fatalf("per-key order: %v", b.violations[:min(3, len(b.violations))])
		}
	})

	t.Run("PublishesThatNeverReturnUseBoundedGoroutines", func(t *testing.T) {
		t.Parallel()
		block := make(chan struct{})
		defer close(block)
		pub := &recordingPublisher{fn: func(*message.Message) error { <-block; return nil }}
		r := testRelay(pub, RelayConfig{BatchSize: 4, Concurrency: 1, PublishTimeout: 30 * time.Millisecond})
		path := newDirectPath(pub, nil, r.cfg.PublishTimeout, r.window())
		defer path.close()
		s := newScheduler(r, path, r.window())
		var got []*claimedBatch
		var wg sync.WaitGroup
		wg.Go(func() { s.run(context.Background(), context.Background()) })
		for range 5 {
			s.in <- &claimedBatch{rows: rowsOf([]string{"a", "b", "c", "d"}, 1), done: func(b *claimedBatch) { got = append(got, b) }}
		}
		close(s.in)
		wg.Wait()
		path.workers.mu.Lock()
		n, queued := path.workers.n, len(path.workers.queue)
		path.workers.mu.Unlock()
		if n > r.window() || queued > r.window() {
			t.Fatalf("%d publishing goroutines and %d queued jobs for 20 hung publishes, want at most the window (%d) of each", n, queued, r.window())
		}
		for _, b := range got {
			if len(b.failed) != 4 || !strings.Contains(b.failed[0].Error, "PublishTimeout") {
				t.Fatalf("failed %+v, want every hung publish timed out", b.failed)
			}
		}
	})
}

func idsOf(rows []*outboxdriver.EventRow) []string {
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	return ids
}

// instantBroker acknowledges every publish at once.
type instantBroker struct{ recordingPublisher }

func (*instantBroker) PublishAsync(string, *message.Message) (func(context.Context) error, error) {
	return func(context.Context) error { return nil }, nil
}

// BenchmarkScheduler measures the relay's own cost per event on the async
// path: message building, scheduling, the attempt's timers and the waiter
// pool, against a broker that answers at once.
func BenchmarkScheduler(b *testing.B) {
	keys := make([]string, 100)
	for i := range keys {
		keys[i] = fmt.Sprint("k", i)
	}
	rows := rowsOf(keys, 5) // one 500-event batch
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		schedule(context.Background(), &instantBroker{}, RelayConfig{}, rows)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(rows)), "ns/event")
}

func TestSchedulerSurvivesPanics(t *testing.T) {
	t.Parallel()
	t.Run("ObserverPanicKeepsTheOutcome", func(t *testing.T) {
		t.Parallel()
		calls := 0
		cfg := RelayConfig{Observer: func(Outcome) { calls++; panic("label value \"bad\\xfftype\" is not valid UTF-8") }}
		got := publishOne(context.Background(), newScriptedBroker("a/1"), cfg, rowsOf([]string{"a", "b"}, 2))
		slices.Sort(got.delivered)
		if calls != 4 || !slices.Equal(got.delivered, []string{"a/0", "b/0", "b/1"}) {
			t.Fatalf("observer calls %d, delivered %v, want 4 calls and a/0 b/0 b/1 delivered", calls, got.delivered)
		}
		if len(got.failed) != 1 || got.failed[0].ID != "a/1" {
			t.Fatalf("failed %+v, want a/1", got.failed)
		}
	})
	t.Run("PublishPanicIsAFailedAttempt", func(t *testing.T) {
		t.Parallel()
		got := publishOne(context.Background(), &asyncPublisher{result: func() error { panic("broker client bug") }}, RelayConfig{MaxAttempts: 2}, rowsOf([]string{"a"}, 2))
		if len(got.failed) != 1 || got.failed[0].Dead || !strings.Contains(got.failed[0].Error, "broker client bug") || !slices.Equal(got.released, []string{"a/1"}) {
			t.Fatalf("failed %+v released %v, want a/0 failed (not dead) with the panic's message, a/1 released", got.failed, got.released)
		}
	})
}

// blockingBroker's PublishAsync blocks until release is closed, as nats.go's
// does while its socket write blocks on a stalled broker.
type blockingBroker struct {
	recordingPublisher
	release chan struct{}
}

func (b *blockingBroker) PublishAsync(string, *message.Message) (func(context.Context) error, error) {
	<-b.release
	return func(context.Context) error { return nil }, nil
}

func TestSchedulerSurvivesABlockingPublishAsync(t *testing.T) {
	t.Parallel()
	b := &blockingBroker{release: make(chan struct{})}
	defer close(b.release)
	got := publishOne(context.Background(), b, RelayConfig{PublishTimeout: 30 * time.Millisecond}, rowsOf([]string{"a", "b", ""}, 2))
	if len(got.failed) != 4 || len(got.released) != 2 || len(got.delivered) != 0 {
		t.Fatalf("delivered %v failed %+v released %v, want every started publish timed out and the keys' later events released",
			got.delivered, got.failed, got.released)
	}
	for _, f := range got.failed {
		if !strings.Contains(f.Error, "PublishTimeout") {
			t.Fatalf("failure %q, want a PublishTimeout", f.Error)
		}
	}
}
