package conformance

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

// RunInsertStrict proves that Insert behaves the same on every driver for
// input a database would store differently or not at all: a Type, Topic,
// Key, header name or header value that is not valid UTF-8, holds a NUL
// byte or is too long is an *outbox.EventError wrapping ErrInvalidEvent,
// returned before any statement runs, so the caller's transaction stays
// usable (PostgreSQL would otherwise abort it); an explicit ID inserted
// again with the same content is an idempotent no-op, and with a different
// key, type, topic or payload an error wrapping ErrDuplicateEvent.
func RunInsertStrict(t *testing.T, h Harness) {
	outboxtest.RequireService(t, append(slices.Clone(h.Database.Services), h.Broker.Services...)...)
	e := setup(t, h)
	ctx := context.Background()

	t.Run("invalid_text_is_an_EventError_and_the_tx_stays_usable", func(t *testing.T) {
		long := strings.Repeat("k", outbox.MaxNameBytes+1)
		cases := map[string]struct {
			mutate func(*outbox.Event)
			field  string
		}{
			"type_invalid_utf8":    {func(ev *outbox.Event) { ev.Type = "bad\xfftype" }, "Type"},
			"type_nul":             {func(ev *outbox.Event) { ev.Type = "a\x00b" }, "Type"},
			"topic_invalid_utf8":   {func(ev *outbox.Event) { ev.Topic = "t\xc3" }, "Topic"},
			"topic_nul":            {func(ev *outbox.Event) { ev.Topic = "t\x00" }, "Topic"},
			"key_invalid_utf8":     {func(ev *outbox.Event) { ev.Key = "k\xff" }, "Key"},
			"key_nul":              {func(ev *outbox.Event) { ev.Key = "\x00" }, "Key"},
			"key_too_long":         {func(ev *outbox.Event) { ev.Key = long }, "Key"},
			"header_name_invalid":  {func(ev *outbox.Event) { ev.Headers = map[string]string{"a\xffb": "v"} }, "Headers"},
			"header_name_nul":      {func(ev *outbox.Event) { ev.Headers = map[string]string{"a\x00": "v"} }, "Headers"},
			"header_name_too_long": {func(ev *outbox.Event) { ev.Headers = map[string]string{long: "v"} }, "Headers"},
			"header_value_invalid": {func(ev *outbox.Event) { ev.Headers = map[string]string{"h": "a\xffb"} }, "Headers"},
			"header_value_nul":     {func(ev *outbox.Event) { ev.Headers = map[string]string{"h": "a\x00b"} }, "Headers"},
			"header_value_too_long": {func(ev *outbox.Event) {
				ev.Headers = map[string]string{"h": strings.Repeat("v", outbox.MaxHeaderValueBytes+1)}
			}, "Headers"},
		}
		tx, err := e.db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
		for name, c := range cases {
			bad := e.event("strict", 1)
			c.mutate(bad)
			err := e.ob.Insert(ctx, tx, e.event("strict", 0), bad)
			var ee *outbox.EventError
			if !errors.As(err, &ee) || !errors.Is(err, outbox.ErrInvalidEvent) || ee.Field != c.field || ee.Index != 1 {
				t.Errorf("%s: Insert returned %v, want an *EventError on %s of event 1 wrapping ErrInvalidEvent", name, err, c.field)
			}
		}
		ok := e.event("strict", 2)
		if err := e.ob.Insert(ctx, tx, ok); err != nil {
			t.Fatalf("the transaction is no longer usable after rejected events: %v", err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatalf("commit after rejected events: %v", err)
		}
		got, err := e.ob.Get(ctx, ok.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Key != "strict" {
			t.Fatalf("stored event: %+v", got)
		}
		if s := e.stats(t); s.Pending != 1 {
			t.Fatalf("pending = %d, want only the valid event (nothing of the rejected calls written)", s.Pending)
		}
	})

	t.Run("reused_id", func(t *testing.T) {
		first := e.event("dup", 0)
		first.ID = "0194a1c2-0000-7000-8000-0000000000d1"
		e.insert(t, first)
		same := e.event("dup", 0)
		same.ID = strings.ToUpper(first.ID)
		if err := e.tryInsert(same); err != nil {
			t.Fatalf("same id and content again: %v, want an idempotent no-op", err)
		}
		for name, mutate := range map[string]func(*outbox.Event){
			"key":     func(ev *outbox.Event) { ev.Key = "other" },
			"type":    func(ev *outbox.Event) { ev.Type = "conformance.other" },
			"topic":   func(ev *outbox.Event) { ev.Topic += ".other" },
			"payload": func(ev *outbox.Event) { ev.Payload = []byte(`{"other":true}`) },
		} {
			ev := e.event("dup", 0)
			ev.ID = first.ID
			mutate(ev)
			// In a batch, behind a new event: the error names the reused one.
			err := e.tryInsert(e.event("dup2", 1), ev)
			if !errors.Is(err, outbox.ErrDuplicateEvent) || !strings.Contains(err.Error(), "event 1") || !strings.Contains(err.Error(), name) {
				t.Errorf("same id, different %s: Insert returned %v, want ErrDuplicateEvent naming event 1 and %s", name, err, name)
			}
		}
		got, err := e.ob.Get(ctx, first.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Key != "dup" || string(got.Payload) != string(first.Payload) {
			t.Fatalf("the first event was changed: %+v", got)
		}
	})
}
