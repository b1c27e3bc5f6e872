package postgres_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/outboxkit/outboxkit/framework/inbox"
	"github.com/outboxkit/outboxkit/framework/outbox"
)

type inboxBundle struct {
	*bundle
	in      *inbox.Inbox
	effects string // business table counting applied effects
}

func setupInbox(t *testing.T, consumer string) *inboxBundle {
	t.Helper()
	b := setup(t)
	in, err := inbox.New(b.drv, inbox.Config{Consumer: consumer})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	effects := `"` + b.drv.Table()[1:len(b.drv.Table())-1] + `_effects"`
	if _, err := b.db.Exec(`CREATE TABLE ` + effects + ` (event_id uuid NOT NULL, applied_by int NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	inboxTable := `"` + b.drv.Table()[1:len(b.drv.Table())-1] + `_inbox"`
	t.Cleanup(func() { _, _ = b.db.Exec(`DROP TABLE IF EXISTS ` + effects + `, ` + inboxTable) })
	return &inboxBundle{bundle: b, in: in, effects: effects}
}

// handler applies the message's effect through the inbox transaction.
func (ib *inboxBundle) handler(instance int) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		tx, ok := inbox.Tx(msg.Context())
		if !ok {
			return errors.New("no inbox tx in context")
		}
		_, err := tx.ExecContext(msg.Context(), `INSERT INTO `+ib.effects+` (event_id, applied_by) VALUES ($1, $2)`, msg.UUID, instance)
		return err
	}
}

func (ib *inboxBundle) effectCounts(t *testing.T) map[string]int {
	t.Helper()
	rows, err := ib.db.Query(`SELECT event_id::text, count(*) FROM ` + ib.effects + ` GROUP BY event_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		out[id] = n
	}
	return out
}

func TestInbox(t *testing.T) {
	t.Parallel()

	t.Run("each event applied once across redeliveries and 4 concurrent instances", func(t *testing.T) {
		t.Parallel()
		ib := setupInbox(t, "teletransmission")
		const events, deliveries, instances = 200, 3, 4
		ids := make([]string, events)
		for i := range ids {
			ids[i] = uuid.NewString()
		}
		handlers := make([]message.NoPublishHandlerFunc, instances)
		for i := range handlers {
			handlers[i] = ib.in.NoPublishMiddleware(ib.handler(i))
		}
		// Every event reaches every instance `deliveries` times, all at once.
		var wg sync.WaitGroup
		errs := make(chan error, events*deliveries*instances)
		for _, id := range ids {
			for d := range deliveries {
				for i := range instances {
					wg.Go(func() {
						msg := message.NewMessage(id, fmt.Appendf(nil, "%d", d))
						if err := handlers[i](msg); err != nil {
							errs <- err
						}
					})
				}
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		counts := ib.effectCounts(t)
		if len(counts) != events {
			t.Fatalf("%d events applied, want %d", len(counts), events)
		}
		for id, n := range counts {
			if n != 1 {
				t.Fatalf("event %s applied %d times", id, n)
			}
		}
	})

	t.Run("handler error rolls back and the redelivery applies once", func(t *testing.T) {
		t.Parallel()
		ib := setupInbox(t, "billing")
		id := uuid.NewString()
		fail := true
		h := ib.in.NoPublishMiddleware(func(msg *message.Message) error {
			if err := ib.handler(0)(msg); err != nil {
				return err
			}
			if fail {
				return errors.New("downstream refused")
			}
			return nil
		})
		if err := h(message.NewMessage(id, nil)); err == nil {
			t.Fatal("handler error swallowed")
		}
		if n := ib.effectCounts(t)[id]; n != 0 {
			t.Fatalf("failed handler's effect committed (%d)", n)
		}
		fail = false
		for range 3 {
			if err := h(message.NewMessage(id, nil)); err != nil {
				t.Fatal(err)
			}
		}
		if n := ib.effectCounts(t)[id]; n != 1 {
			t.Fatalf("effect applied %d times, want 1", n)
		}
	})

	t.Run("consumers are independent", func(t *testing.T) {
		t.Parallel()
		ib := setupInbox(t, "a")
		other, err := inbox.New(ib.drv, inbox.Config{Consumer: "b"})
		if err != nil {
			t.Fatal(err)
		}
		id := uuid.NewString()
		for _, in := range []*inbox.Inbox{ib.in, other, ib.in} {
			if _, err := in.Process(context.Background(), id, func(ctx context.Context, tx *sql.Tx) error { return nil }); err != nil {
				t.Fatal(err)
			}
		}
		again, err := other.Process(context.Background(), id, func(context.Context, *sql.Tx) error { return nil })
		if err != nil || again {
			t.Fatalf("second processing by b: processed=%v err=%v", again, err)
		}
	})

	t.Run("message without event id is a clear error", func(t *testing.T) {
		t.Parallel()
		ib := setupInbox(t, "c")
		h := ib.in.NoPublishMiddleware(ib.handler(0))
		for _, id := range []string{"", "not-a-uuid"} {
			if err := h(message.NewMessage(id, nil)); !errors.Is(err, inbox.ErrNoEventID) {
				t.Fatalf("uuid %q: got %v", id, err)
			}
		}
	})

	t.Run("prune removes only old ids, in batches", func(t *testing.T) {
		t.Parallel()
		ib := setupInbox(t, "d")
		in, err := inbox.New(ib.drv, inbox.Config{Consumer: "d", Retention: 1, PruneBatch: 3})
		if err != nil {
			t.Fatal(err)
		}
		for range 10 {
			if _, err := in.Process(context.Background(), uuid.NewString(), func(context.Context, *sql.Tx) error { return nil }); err != nil {
				t.Fatal(err)
			}
		}
		n, err := in.Prune(context.Background())
		if err != nil || n != 10 {
			t.Fatalf("pruned %d, err %v", n, err)
		}
		keep, _ := inbox.New(ib.drv, inbox.Config{Consumer: "d"})
		_, _ = keep.Process(context.Background(), uuid.NewString(), func(context.Context, *sql.Tx) error { return nil })
		if n, err := keep.Prune(context.Background()); err != nil || n != 0 {
			t.Fatalf("pruned %d fresh ids, err %v", n, err)
		}
	})

	t.Run("config errors name the field", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		for _, cfg := range []inbox.Config{{}, {Consumer: "has space"}, {Consumer: "x", Retention: -1}} {
			if _, err := inbox.New(b.drv, cfg); !errors.Is(err, outbox.ErrInvalidConfig) {
				t.Fatalf("%+v: %v", cfg, err)
			}
		}
	})
}
