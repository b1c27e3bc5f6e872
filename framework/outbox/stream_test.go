package outbox

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// flakyBroker fails the first fails[id] publishes of an event, then
// acknowledges it; it records the order of acknowledgements.
type flakyBroker struct {
	*scriptedBroker
	mu    sync.Mutex
	fails map[string]int
	acked []string
}

func (b *flakyBroker) PublishAsync(topic string, msg *message.Message) (func(context.Context) error, error) {
	b.mu.Lock()
	fail := b.fails[msg.UUID] > 0
	if fail {
		b.fails[msg.UUID]--
	}
	b.mu.Unlock()
	wait, err := b.scriptedBroker.PublishAsync(topic, msg)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		if err := wait(ctx); err != nil {
			return err
		}
		if fail {
			return errors.New("flaky broker refused " + msg.UUID)
		}
		b.mu.Lock()
		b.acked = append(b.acked, msg.UUID)
		b.mu.Unlock()
		return nil
	}, nil
}

// hookLog records a stream-mode scheduler's outcomes.
type hookLog struct {
	mu    sync.Mutex
	acks  []string
	fails []outboxdriver.FailedAttempt
	holds []string
}

func (h *hookLog) delivered(row *outboxdriver.EventRow) {
	h.mu.Lock()
	h.acks = append(h.acks, row.ID)
	h.mu.Unlock()
}

func (h *hookLog) failed(_ *outboxdriver.EventRow, fa outboxdriver.FailedAttempt) {
	h.mu.Lock()
	h.fails = append(h.fails, fa)
	h.mu.Unlock()
}

func (h *hookLog) held(rows []*outboxdriver.EventRow) {
	h.mu.Lock()
	for _, r := range rows {
		h.holds = append(h.holds, r.ID)
	}
	h.mu.Unlock()
}

// streamSchedule runs a stream-mode scheduler over batches handed in one
// after the other, gap apart, and returns once every batch is done.
func streamSchedule(t *testing.T, pub AsyncPublisher, cfg RelayConfig, gap time.Duration, batches ...[]*outboxdriver.EventRow) *hookLog {
	t.Helper()
	r := testRelay(pub, cfg)
	path := newAsyncPath(pub, r.cfg.PublishTimeout, r.window())
	defer path.close()
	ctx := t.Context()
	s := newScheduler(r, path, r.window())
	h := &hookLog{}
	s.stream = &streamKeys{hooks: h, active: map[string]*keyRun{}, chained: map[string][]*keyRun{},
		parked: map[*keyRun]*time.Timer{}, retries: make(chan *keyRun, 16)}
	var wg sync.WaitGroup
	wg.Go(func() { s.run(ctx, ctx) })
	done := make(chan struct{}, len(batches))
	for _, rows := range batches {
		s.in <- &claimedBatch{rows: rows, done: func(*claimedBatch) { done <- struct{}{} }}
		time.Sleep(gap)
	}
	close(s.in)
	wg.Wait()
	if len(done) != len(batches) {
		t.Fatalf("%d of %d batches done", len(done), len(batches))
	}
	return h
}

func idsOfKey(ids []string, key string) []string {
	var out []string
	for _, id := range ids {
		var k string
		var i int
		if _, err := fmt.Sscanf(id, "%1s/%d", &k, &i); err == nil && k == key {
			out = append(out, id)
		}
	}
	return out
}

func TestStreamSchedulerPoisonAcrossBatches(t *testing.T) {
	t.Parallel()

	t.Run("ParkedKeyHoldsItsLaterBatchesOthersFlow", func(t *testing.T) {
		t.Parallel()
		// Three batches sharing keys a and b; a/0 fails three times.
		all := rowsOf([]string{"a", "b"}, 9)
		batches := [][]*outboxdriver.EventRow{all[:6], all[6:12], all[12:]}
		pub := &flakyBroker{scriptedBroker: newScriptedBroker(), fails: map[string]int{"a/0": 3}}
		h := streamSchedule(t, pub, RelayConfig{MaxAttempts: 10, BackoffMin: 20 * time.Millisecond, BackoffMax: 40 * time.Millisecond}, 5*time.Millisecond, batches...)

		if len(pub.violations) > 0 {
			t.Fatalf("per-key order violated: %v", pub.violations)
		}
		if len(h.acks) != len(all) {
			t.Fatalf("%d events delivered, want %d", len(h.acks), len(all))
		}
		wantA := idsOfKey(idsOf(all), "a")
		if got := idsOfKey(pub.acked, "a"); fmt.Sprint(got) != fmt.Sprint(wantA) {
			t.Fatalf("key a acknowledged in order %v, want %v", got, wantA)
		}
		// b flowed while a was parked: every b was acknowledged before a/0.
		firstA := indexOf(pub.acked, "a/0")
		for _, id := range idsOfKey(idsOf(all), "b") {
			if indexOf(pub.acked, id) > firstA {
				t.Errorf("%s acknowledged after the parked a/0: key b waited for key a", id)
			}
		}
		if len(h.fails) != 3 {
			t.Fatalf("%d failed attempts recorded, want 3", len(h.fails))
		}
		for _, fa := range h.fails {
			if fa.ID != "a/0" || fa.Dead || fa.Delay <= 0 {
				t.Errorf("failure %+v: want a/0, not dead, with a delay", fa)
			}
		}
		// a's later events, also those of later batches, were held.
		held := map[string]bool{}
		for _, id := range h.holds {
			held[id] = true
		}
		for _, id := range wantA[1:] {
			if !held[id] {
				t.Errorf("%s waited behind the parked a/0 but was never held", id)
			}
		}
		for _, id := range h.holds {
			if len(idsOfKey([]string{id}, "a")) == 0 {
				t.Errorf("%s held, but only key a was parked", id)
			}
		}
	})

	t.Run("DeadAfterMaxAttemptsThenKeyGoesOn", func(t *testing.T) {
		t.Parallel()
		all := rowsOf([]string{"a", "b"}, 4)
		pub := &flakyBroker{scriptedBroker: newScriptedBroker(), fails: map[string]int{"a/1": 100}}
		h := streamSchedule(t, pub, RelayConfig{MaxAttempts: 3, BackoffMin: 5 * time.Millisecond, BackoffMax: 10 * time.Millisecond}, 0, all[:4], all[4:])
		var dead []string
		for _, fa := range h.fails {
			if fa.Dead {
				dead = append(dead, fa.ID)
			}
		}
		if fmt.Sprint(dead) != "[a/1]" || len(h.fails) != 3 {
			t.Fatalf("failures %+v: want a/1 failing 3 times, the last dead", h.fails)
		}
		if len(h.acks) != len(all)-1 {
			t.Fatalf("%d delivered, want %d (all but the dead one)", len(h.acks), len(all)-1)
		}
		if got := idsOfKey(pub.acked, "a"); fmt.Sprint(got) != "[a/0 a/2 a/3]" {
			t.Fatalf("key a acknowledged %v, want [a/0 a/2 a/3]", got)
		}
	})

	t.Run("StopReleasesParkedRuns", func(t *testing.T) {
		t.Parallel()
		all := rowsOf([]string{"a", "b"}, 3)
		pub := &flakyBroker{scriptedBroker: newScriptedBroker(), fails: map[string]int{"a/0": 100}}
		r := testRelay(pub, RelayConfig{MaxAttempts: 100, BackoffMin: time.Hour, BackoffMax: time.Hour})
		path := newAsyncPath(pub, r.cfg.PublishTimeout, r.window())
		defer path.close()
		s := newScheduler(r, path, r.window())
		h := &hookLog{}
		s.stream = &streamKeys{hooks: h, active: map[string]*keyRun{}, chained: map[string][]*keyRun{},
			parked: map[*keyRun]*time.Timer{}, retries: make(chan *keyRun, 16)}
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		wg.Go(func() { s.run(ctx, t.Context()) })
		var b *claimedBatch
		done := make(chan struct{})
		s.in <- &claimedBatch{rows: all, done: func(x *claimedBatch) { b = x; close(done) }}
		deadline := time.Now().Add(10 * time.Second)
		for {
			h.mu.Lock()
			n := len(h.acks) + len(h.fails)
			h.mu.Unlock()
			if n == 4 || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Millisecond)
		}
		cancel()
		close(s.in)
		wg.Wait()
		<-done
		if fmt.Sprint(b.released) != "[a/0 a/1 a/2]" {
			t.Fatalf("released %v, want the parked key's events [a/0 a/1 a/2]", b.released)
		}
	})
}

func indexOf(ids []string, id string) int {
	for i, x := range ids {
		if x == id {
			return i
		}
	}
	return -1
}
