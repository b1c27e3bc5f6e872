package conformance

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outboxkit/framework/outbox"
)

// C3 At-least-once with stable ids (the per-crash duplicate bound is
// measured by C2/relay_SIGKILL_restart).
func c3Tests() []namedTest {
	return []namedTest{
		{"event_id_in_uuid_and_dedup_slot", testIDSlots},
		{"resend_keeps_the_id", testResendKeepsID},
	}
}

func testIDSlots(t *testing.T, h Harness) {
	e := setup(t, h)
	e.relay(nil, e.broker.NewPublisher(t, ""), outbox.RelayConfig{})
	var evs []*outbox.Event
	for i := range 20 {
		evs = append(evs, e.event(fmt.Sprintf("k%d", i%3), i))
	}
	// One with a caller-chosen id: that id, not a generated one, travels.
	evs[0].ID = "0194a1c2-0000-7000-8000-00000000c3c3"
	e.insert(t, evs...)
	e.waitAllDelivered(t, ids(evs), hangGuard)
	for _, r := range e.got.snapshot() {
		if r.Metadata[outbox.MetadataEventID] != r.UUID {
			t.Errorf("message %s: metadata %s = %q", r.UUID, outbox.MetadataEventID, r.Metadata[outbox.MetadataEventID])
		}
		if (h.Broker.Features.NativeDedup || h.Broker.Features.DedupSlot != "") && r.DedupID != r.UUID {
			t.Errorf("message %s: broker dedup slot holds %q", r.UUID, r.DedupID)
		}
	}
}

// testResendKeepsID resends a delivered event (Retry): it is published again
// under the same id, and a broker with native dedup stores it once.
func testResendKeepsID(t *testing.T, h Harness) {
	if h.Database.DeletesDelivered {
		skipf(t, "database %s deletes delivered events: there is no delivered event to resend", h.Database.Name)
	}
	e := setup(t, h)
	log := &ackLog{}
	e.relay(nil, &tap{inner: e.broker.NewPublisher(t, ""), log: log}, outbox.RelayConfig{})
	ev := e.event("k", 1)
	e.insert(t, ev)
	e.waitAllDelivered(t, []string{ev.ID}, hangGuard)
	if n, err := e.ob.Retry(context.Background(), ev.ID); err != nil || n != 1 {
		t.Fatalf("retry delivered event: n=%d err=%v", n, err)
	}
	eventually(t, "the resend acknowledged", hangGuard, func() bool { return len(log.snapshot()) == 2 })
	marker := e.event("k", 2)
	e.insert(t, marker)
	e.waitAllDelivered(t, []string{marker.ID}, hangGuard)
	for _, a := range log.snapshot()[:2] {
		if a.id != ev.ID {
			t.Fatalf("resend published under id %s, want %s", a.id, ev.ID)
		}
	}
	got := e.got.count(ev.ID)
	t.Logf("event published twice; the broker stored it %d times", got)
	if h.Broker.Features.NativeDedup && got != 1 {
		t.Fatalf("broker with native dedup stored a resent event %d times", got)
	}
	if !h.Broker.Features.NativeDedup && got != 2 {
		t.Fatalf("broker without native dedup stored a resent event %d times, want 2", got)
	}
}

// C4 Per-key order.
func c4Tests() []namedTest {
	return []namedTest{
		{"per_key_order_three_relays", testKeyOrderThreeRelays},
		{"failing_key_holds_back_only_itself", testFailingKey},
	}
}

// writeKeys commits perKey events for each of keys keys from several
// writers; each writer owns some keys and commits one event per owned key
// per transaction, so commit order per key is the writer's order.
func (e *env) writeKeys(t *testing.T, keys, perKey int) (want map[string][]string, all []string) {
	const writers = 10
	want = map[string][]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perKey {
				var evs []*outbox.Event
				for k := w; k < keys; k += writers {
					evs = append(evs, e.event(fmt.Sprintf("key-%03d", k), i))
				}
				if err := e.tryInsert(evs...); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, ev := range evs {
					want[ev.Key] = append(want[ev.Key], ev.ID)
					all = append(all, ev.ID)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return want, all
}

func (e *env) checkOrder(t *testing.T, want map[string][]string, log *ackLog) {
	t.Helper()
	if err := checkKeyOrder(want, firstOrder(log.snapshot(), func(a ack) (string, string) { return a.id, a.key })); err != nil {
		t.Errorf("order of acknowledgements: %v", err)
	}
	if !e.h.Broker.Features.PerKeyOrder {
		t.Logf("broker %s does not promise per-key order: checked the relays' acknowledgement order only", e.h.Broker.Name)
		return
	}
	if err := checkKeyOrder(want, firstOrder(e.got.snapshot(), func(r Received) (string, string) { return r.UUID, r.Metadata[outbox.MetadataKey] })); err != nil {
		t.Errorf("order on the broker: %v", err)
	}
}

func testKeyOrderThreeRelays(t *testing.T, h Harness) {
	e := setup(t, h)
	log := &ackLog{}
	for i := range 3 {
		e.relay(nil, &tap{inner: e.broker.NewPublisher(t, ""), log: log}, outbox.RelayConfig{ID: fmt.Sprintf("relay-%d", i), BatchSize: 37})
	}
	keys, perKey := h.size(50, 200), h.size(20, 50)
	start := time.Now()
	want, all := e.writeKeys(t, keys, perKey)
	e.waitAllDelivered(t, all, 3*hangGuard)
	t.Logf("%d keys × %d events through 3 relays in %s", keys, perKey, time.Since(start).Round(time.Millisecond))
	e.checkOrder(t, want, log)
}

func testFailingKey(t *testing.T, h Harness) {
	e := setup(t, h)
	log := &ackLog{}
	var failing atomic.Bool
	failing.Store(true)
	var failures atomic.Int64
	before := func(m *message.Message) error {
		if failing.Load() && m.Metadata.Get(outbox.MetadataKey) == "key-000" {
			failures.Add(1)
			return errInjected
		}
		return nil
	}
	cfg := outbox.RelayConfig{BatchSize: 37, MaxAttempts: 10000, BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond}
	for i := range 3 {
		cfg.ID = fmt.Sprintf("relay-%d", i)
		e.relay(nil, &tap{inner: e.broker.NewPublisher(t, ""), before: before, log: log}, cfg)
	}
	keys, perKey := 20, h.size(10, 25)
	want, _ := e.writeKeys(t, keys, perKey)
	var others []string
	for k, ids := range want {
		if k != "key-000" {
			others = append(others, ids...)
		}
	}
	// Every other key flows while key-000 keeps failing ...
	eventually(t, "other keys delivered", hangGuard, func() bool { return e.got.hasAll(others) })
	for _, a := range log.snapshot() {
		if a.key == "key-000" {
			t.Fatalf("an event of the failing key was acknowledged while its first event fails")
		}
	}
	// The other keys can all be out before the failing key's first
	// attempt has its outcome; it must come, and keep failing.
	eventually(t, "the failing key attempted", hangGuard, func() bool { return failures.Load() > 0 })
	// ... its failures are counted on its first event (read while it is
	// still pending: a driver may delete delivered events) ...
	eventually(t, "the failing key's failures counted on its first event", hangGuard, func() bool {
		return e.get(t, want["key-000"][0]).Attempts >= 2
	})
	// ... and once the broker accepts it, the key drains in commit order.
	failing.Store(false)
	e.waitAllDelivered(t, want["key-000"], hangGuard)
	t.Logf("key-000 failed %d times while %d events of %d other keys flowed", failures.Load(), len(others), keys-1)
	e.checkOrder(t, want, log)
}
