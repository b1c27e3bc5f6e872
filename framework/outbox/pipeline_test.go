package outbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
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

// pipelineWorker is a worker on the PublishDirect path over pub, as
// Relay.startPublishing sets it up, without a database.
func pipelineWorker(pub AsyncPublisher, cfg RelayConfig) *worker {
	cfg = cfg.withDefaults()
	r := &Relay{publisher: pub, cfg: cfg, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	r.backoff.Min, r.backoff.Max = cfg.BackoffMin, cfg.BackoffMax
	return &worker{Relay: r, send: &asyncSender{pub: pub, timeout: cfg.PublishTimeout}}
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

func TestPublishPipelined(t *testing.T) {
	t.Parallel()
	keys := []string{"a", "b", "c", "", ""}

	t.Run("KeyOrderAndEveryOutcome", func(t *testing.T) {
		t.Parallel()
		b := newScriptedBroker()
		rows := rowsOf(keys, 40)
		res := pipelineWorker(b, RelayConfig{}).publish(context.Background(), rows)
		if len(b.violations) > 0 {
			t.Fatalf("per-key order: %v", b.violations[:min(3, len(b.violations))])
		}
		if len(res.delivered) != len(rows) || len(res.failed) != 0 || len(res.released) != 0 {
			t.Fatalf("delivered %d failed %d released %d, want all %d delivered", len(res.delivered), len(res.failed), len(res.released), len(rows))
		}
		// Keyless events do not wait for each other: all 80 start in the
		// first wave, with the heads of a, b and c.
		if b.maxInFlight < 83 {
			t.Fatalf("at most %d publishes in flight, want the 83 that can go at once", b.maxInFlight)
		}
	})

	t.Run("FailureReleasesTheKeysLaterEvents", func(t *testing.T) {
		t.Parallel()
		b := newScriptedBroker("b/1")
		res := pipelineWorker(b, RelayConfig{}).publish(context.Background(), rowsOf(keys, 4))
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
		res := pipelineWorker(b, RelayConfig{MaxAttempts: 1}).publish(context.Background(), rowsOf([]string{"a"}, 3))
		if len(res.failed) != 1 || !res.failed[0].Dead || !slices.Equal(res.delivered, []string{"a/1", "a/2"}) {
			t.Fatalf("failed %+v delivered %v, want a/0 dead then a/1 a/2 delivered", res.failed, res.delivered)
		}
	})

	t.Run("UnreadableRowIsDeadAndItsKeyGoesOn", func(t *testing.T) {
		t.Parallel()
		rows := rowsOf([]string{"a"}, 3)
		rows[0].Topic = ""
		res := pipelineWorker(newScriptedBroker(), RelayConfig{}).publish(context.Background(), rows)
		if len(res.failed) != 1 || !res.failed[0].Dead || !slices.Equal(res.delivered, []string{"a/1", "a/2"}) {
			t.Fatalf("failed %+v delivered %v, want a/0 dead then a/1 a/2 delivered", res.failed, res.delivered)
		}
	})

	t.Run("StartErrorIsAFailedAttempt", func(t *testing.T) {
		t.Parallel()
		p := &asyncPublisher{startErr: errors.New("nats: invalid subject")}
		res := pipelineWorker(p, RelayConfig{}).publish(context.Background(), rowsOf([]string{"a"}, 2))
		if len(res.failed) != 1 || res.failed[0].Error != "nats: invalid subject" || !slices.Equal(res.released, []string{"a/1"}) {
			t.Fatalf("failed %+v released %v", res.failed, res.released)
		}
	})

	t.Run("WindowBoundsPublishesInFlight", func(t *testing.T) {
		t.Parallel()
		var many []string
		for i := range 3 * asyncWindow {
			many = append(many, fmt.Sprint("k", i))
		}
		b := newScriptedBroker()
		res := pipelineWorker(b, RelayConfig{}).publish(context.Background(), rowsOf(many, 1))
		if len(res.delivered) != len(many) {
			t.Fatalf("delivered %d of %d", len(res.delivered), len(many))
		}
		if b.maxInFlight > asyncWindow {
			t.Fatalf("%d publishes in flight, window is %d", b.maxInFlight, asyncWindow)
		}
	})

	t.Run("StoppingReleasesWhatDidNotStart", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		b := newScriptedBroker()
		res := pipelineWorker(b, RelayConfig{}).publish(ctx, rowsOf([]string{"a", "b"}, 2))
		if len(b.started) != 0 || len(res.released) != 4 {
			t.Fatalf("started %v released %v, want nothing started and all 4 released", b.started, res.released)
		}
	})

	t.Run("NoAckUntilHardStopReleasesInFlight", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		w := pipelineWorker(&asyncPublisher{}, RelayConfig{ShutdownTimeout: 20 * time.Millisecond})
		time.AfterFunc(10*time.Millisecond, cancel)
		res := w.publish(ctx, rowsOf([]string{"a"}, 3))
		if len(res.delivered)+len(res.failed) != 0 || !slices.Equal(res.released, []string{"a/0", "a/1", "a/2"}) {
			t.Fatalf("delivered %v failed %v released %v, want all released (outcome unknown)", res.delivered, res.failed, res.released)
		}
	})
}

func TestScanHint(t *testing.T) {
	t.Parallel()
	var h scanHint
	if h.from() != 0 {
		t.Fatal("a new worker claims from the start")
	}
	h.claimed(0, 100, 7)
	if h.from() != 7 {
		t.Fatalf("after a batch starting at 7: from %d, want 7", h.from())
	}
	h.claimed(7, 100, 107)
	if h.from() != 107 {
		t.Fatalf("after a batch from the hint starting at 107: from %d, want 107", h.from())
	}
	h.claimed(107, 0, 0)
	if h.from() != 107 {
		t.Fatalf("after an empty claim from the hint: from %d, want 107 (new events come after it)", h.from())
	}
	h.fromZero = time.Now().Add(-rescanEvery)
	if h.from() != 0 {
		t.Fatalf("a hint older than rescanEvery: from %d, want a claim from the start", h.from())
	}
	h.claimed(0, 0, 0)
	if h.from() != 107 {
		t.Fatalf("after the claim from the start: from %d, want the hint again", h.from())
	}
}
