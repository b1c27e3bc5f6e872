package conformance

import (
	"context"
	"errors"
	"testing"

	"github.com/outboxkit/outboxkit/framework/outbox"
)

// C1 Atomic: an event is published if and only if its transaction committed.
func c1Tests() []namedTest {
	return []namedTest{
		{"commit_publishes", testCommitPublishes},
		{"rollback_publishes_nothing", testRollbackPublishesNothing},
		{"savepoint_rollback_publishes_nothing_of_it", testSavepointRollback},
	}
}

func testCommitPublishes(t *testing.T, h Harness) {
	e := setup(t, h)
	e.relay(nil, e.broker.NewPublisher(t, ""), outbox.RelayConfig{})
	ev := e.event("a", 1)
	ev.Headers = map[string]string{"x-custom": "kept"}
	e.insert(t, ev)
	e.waitAllDelivered(t, []string{ev.ID}, hangGuard)
	var got Received
	for _, r := range e.got.snapshot() {
		if r.UUID == ev.ID {
			got = r
		}
	}
	if string(got.Payload) != string(ev.Payload) || got.Metadata[outbox.MetadataKey] != "a" ||
		got.Metadata[outbox.MetadataEventType] != ev.Type || got.Metadata["x-custom"] != "kept" {
		t.Fatalf("published message differs from the event: payload=%s metadata=%v", got.Payload, got.Metadata)
	}
	ok, st := e.delivered(t, ev.ID)
	if !ok || (st != nil && (st.DeliveredAt == nil || st.Attempts != 1)) {
		t.Fatalf("stored after delivery: %+v (deletes delivered: %v)", st, h.Database.DeletesDelivered)
	}
}

func testRollbackPublishesNothing(t *testing.T, h Harness) {
	e := setup(t, h)
	e.relay(nil, e.broker.NewPublisher(t, ""), outbox.RelayConfig{})
	tx, err := e.db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	rolledBack := e.event("k", 1)
	if err := e.ob.Insert(context.Background(), tx, rolledBack); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	// Same key, committed after: once it is on the broker the relay has
	// passed the place where the rolled-back event would have been.
	marker := e.event("k", 2)
	e.insert(t, marker)
	e.waitAllDelivered(t, []string{marker.ID}, hangGuard)
	if n := e.got.count(rolledBack.ID); n != 0 {
		t.Fatalf("rolled-back event published %d times", n)
	}
	if _, err := e.ob.Get(context.Background(), rolledBack.ID); !errors.Is(err, outbox.ErrNotFound) {
		t.Fatalf("rolled-back event: want ErrNotFound, got %v", err)
	}
}

func testSavepointRollback(t *testing.T, h Harness) {
	e := setup(t, h)
	e.relay(nil, e.broker.NewPublisher(t, ""), outbox.RelayConfig{})
	ctx := context.Background()
	tx, err := e.db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck
	before, inside, after := e.event("k", 1), e.event("k", 2), e.event("k", 3)
	if err := e.ob.Insert(ctx, tx, before); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "SAVEPOINT conformance_sp"); err != nil {
		t.Fatal(err)
	}
	if err := e.ob.Insert(ctx, tx, inside); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT conformance_sp"); err != nil {
		t.Fatal(err)
	}
	if err := e.ob.Insert(ctx, tx, after); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	marker := e.event("k", 4)
	e.insert(t, marker)
	e.waitAllDelivered(t, []string{before.ID, after.ID, marker.ID}, hangGuard)
	if n := e.got.count(inside.ID); n != 0 {
		t.Fatalf("event of the rolled-back savepoint published %d times", n)
	}
	if _, err := e.ob.Get(ctx, inside.ID); !errors.Is(err, outbox.ErrNotFound) {
		t.Fatalf("savepoint event: want ErrNotFound, got %v", err)
	}
}
