// Package outboxwsqltest is the shared test suite of the drivers'
// watermill-sql v3 schema adapters: each driver runs Run against its real
// database, with a Harness that publishes through watermill-sql (this
// package imports no watermill-sql package, so the core module does not
// depend on it).
package outboxwsqltest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
	"github.com/outboxkit/outboxkit/framework/outboxwsql"
)

// ForwarderTopic is the forwarder topic the suite's writers wrap messages
// for; the Harness's adapter must be configured with it.
const ForwarderTopic = "forwarder_outbox"

// Adapter is the adapter configuration a Harness builds its driver's
// schema adapter from (on the Harness's table, with ForwarderTopic).
type Adapter struct {
	MaxPayloadBytes int
	KeyMetadata     string
	TypeMetadata    string
}

// Harness is what a driver gives the suite.
type Harness struct {
	// DB is the real database; Driver is the driver of a migrated table on
	// it, used by the suite's relay, and Outbox an Outbox on Driver.
	DB     *sql.DB
	Driver outboxdriver.Driver
	Outbox *outbox.Outbox

	// Publish publishes msgs to topic in tx through watermill-sql: a
	// sql.NewPublisher(tx, ...) whose SchemaAdapter is the driver's adapter
	// configured with a, wrapped by forwarder.NewPublisher with
	// ForwarderTopic when forward is true.
	Publish func(tx *sql.Tx, a Adapter, topic string, forward bool, msgs ...*message.Message) error

	// Subscribe runs the adapter's SelectQuery on DB and its
	// UnmarshalMessage on the first row, and returns UnmarshalMessage's
	// error (or an error saying there was no row).
	Subscribe func() error
}

// Run runs the suite. Test names contain WatermillSQL when the caller's
// does.
func Run(t *testing.T, h Harness) {
	std := Adapter{KeyMetadata: "partition_key", TypeMetadata: "event_type"}
	t.Run("RelayDeliversCommittedOnceInKeyOrder", func(t *testing.T) { testRelay(t, h, std) })
	t.Run("ValidationErrorsAreInsertErrors", func(t *testing.T) { testValidation(t, h, std) })
	t.Run("NotAnEnvelopeOnTheForwarderTopic", func(t *testing.T) {
		tx := begin(t, h)
		err := h.Publish(tx, std, ForwarderTopic, false, message.NewMessage(watermill.NewUUID(), []byte("\x00\xff not json")))
		var ee *outbox.EventError
		if !errors.As(err, &ee) || ee.Field != "Payload" || !strings.Contains(ee.Reason, "forwarder envelope") {
			t.Fatalf("Publish: %v, want an *outbox.EventError on Payload naming the envelope", err)
		}
	})
	t.Run("UnwrappedMessageKeepsItsTopic", func(t *testing.T) {
		tx := begin(t, h)
		m := Message("k", 1)
		// No key or type field: no key, and the type is the topic.
		if err := h.Publish(tx, Adapter{}, "care.invoices", false, m); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		ev, err := h.Outbox.Get(context.Background(), m.UUID)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Topic != "care.invoices" || ev.Key != "" || ev.Type != "care.invoices" {
			t.Fatalf("topic %q key %q type %q", ev.Topic, ev.Key, ev.Type)
		}
	})
	t.Run("SubscribingIsRefused", func(t *testing.T) {
		if err := h.Subscribe(); !errors.Is(err, outboxwsql.ErrWriterOnly) {
			t.Fatalf("subscribing: %v, want ErrWriterOnly", err)
		}
	})
}

// Message returns the i-th message of key: hostile bytes in the payload,
// the key and type in metadata fields partition_key and event_type.
func Message(key string, i int) *message.Message {
	m := message.NewMessage(watermill.NewUUID(), fmt.Appendf(nil, `{"i":%d,"raw":"\u0000<b>\u001b[31m"}`, i))
	m.Metadata.Set("partition_key", key)
	m.Metadata.Set("event_type", "invoice.issued")
	m.Metadata.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	return m
}

func begin(t *testing.T, h Harness) *sql.Tx {
	t.Helper()
	tx, err := h.DB.BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback() })
	return tx
}

// testRelay: several writers publish two messages per transaction, one
// transaction in three rolls back; outboxkit's relay must publish every
// committed message exactly once, per key in commit order, and nothing
// rolled back.
func testRelay(t *testing.T, h Harness, a Adapter) {
	rec := &Recorder{}
	relay, err := outbox.NewRelay(h.Driver, rec, outbox.RelayConfig{PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	}()

	const writers, txs = 6, 20
	var mu sync.Mutex
	committed := map[string][]string{} // key -> message UUIDs in commit order
	sent := map[string]*message.Message{}
	rolledBack := map[string]bool{}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			key := fmt.Sprintf("customer-%d", w)
			for i := range txs {
				tx, err := h.DB.BeginTx(ctx, nil)
				if err != nil {
					t.Error(err)
					return
				}
				msgs := []*message.Message{Message(key, 2*i), Message(key, 2*i+1)}
				if err := h.Publish(tx, a, "invoices", true, msgs...); err != nil {
					t.Errorf("Publish: %v", err)
					_ = tx.Rollback()
					return
				}
				mu.Lock()
				if i%3 == 2 {
					_ = tx.Rollback()
					for _, m := range msgs {
						rolledBack[m.UUID] = true
					}
				} else if err := tx.Commit(); err != nil {
					t.Errorf("Commit: %v", err)
				} else {
					for _, m := range msgs {
						committed[key] = append(committed[key], m.UUID)
						sent[m.UUID] = m
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	rec.WaitDistinct(t, len(sent))
	// Rolled-back messages never reached the table, so no later claim can
	// publish them: the table holds exactly the committed ones.
	page, err := h.Outbox.List(context.Background(), outbox.ListFilter{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != len(sent) {
		t.Fatalf("outbox table holds %d events, want the %d committed messages", len(page.Events), len(sent))
	}
	published := rec.Snapshot()
	if len(published) != len(sent) {
		t.Fatalf("%d publishes for %d committed messages, want each exactly once", len(published), len(sent))
	}
	got := map[string][]string{}
	for _, m := range published {
		if rolledBack[m.UUID] {
			t.Fatalf("rolled-back message %s was published", m.UUID)
		}
		want := sent[m.UUID]
		if want == nil {
			t.Fatalf("published unknown message %s", m.UUID)
		}
		if string(m.Payload) != string(want.Payload) {
			t.Fatalf("%s: payload %q, want %q", m.UUID, m.Payload, want.Payload)
		}
		for k, v := range want.Metadata {
			if m.Metadata.Get(k) != v {
				t.Fatalf("%s: metadata %s = %q, want %q", m.UUID, k, m.Metadata.Get(k), v)
			}
		}
		k := m.Metadata.Get(outbox.MetadataKey)
		if k != want.Metadata.Get("partition_key") || m.Metadata.Get(outbox.MetadataEventType) != "invoice.issued" {
			t.Fatalf("%s: key %q type %q", m.UUID, k, m.Metadata.Get(outbox.MetadataEventType))
		}
		got[k] = append(got[k], m.UUID)
	}
	for k, ids := range committed {
		if fmt.Sprint(got[k]) != fmt.Sprint(ids) {
			t.Fatalf("key %s: published in order\n %v\nwant commit order\n %v", k, got[k], ids)
		}
	}
	ev, err := h.Outbox.Get(context.Background(), committed["customer-0"][0])
	if err != nil {
		t.Fatal(err)
	}
	if ev.Topic != "invoices" || ev.Key != "customer-0" || ev.Type != "invoice.issued" || ev.Headers["partition_key"] != "customer-0" {
		t.Fatalf("stored event: topic %q key %q type %q headers %v", ev.Topic, ev.Key, ev.Type, ev.Headers)
	}
}

// testValidation: an invalid message fails Publish with the error Insert
// returns for the same event, writes nothing, and leaves the transaction
// usable.
func testValidation(t *testing.T, h Harness, a Adapter) {
	small := a
	small.MaxPayloadBytes = 8
	for _, tc := range []struct {
		name    string
		adapter Adapter
		msg     func() *message.Message
		field   string
		is      error
	}{
		{"IDNotAUUID", a, func() *message.Message { return message.NewMessage("INV-1", []byte("{}")) }, "ID", outbox.ErrInvalidEvent},
		{"ReservedHeader", a, func() *message.Message {
			m := Message("k", 1)
			m.Metadata.Set(outbox.MetadataKey, "spoofed")
			return m
		}, "Headers", outbox.ErrInvalidEvent},
		{"PayloadTooLarge", small, func() *message.Message { return Message("k", 1) }, "Payload", outbox.ErrEventTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tx := begin(t, h)
			m := tc.msg()
			err := h.Publish(tx, tc.adapter, "invoices", true, m)
			var ee *outbox.EventError
			if !errors.As(err, &ee) || !errors.Is(err, tc.is) || ee.Field != tc.field || ee.Index != 0 {
				t.Fatalf("Publish: %v, want an *outbox.EventError on %s wrapping %v", err, tc.field, tc.is)
			}
			// The same event given to Insert fails the same way.
			ob, err := outbox.New(h.Driver, outbox.Config{MaxPayloadBytes: tc.adapter.MaxPayloadBytes})
			if err != nil {
				t.Fatal(err)
			}
			insertErr := ob.Insert(context.Background(), tx, &outbox.Event{ID: m.UUID, Type: m.Metadata.Get("event_type"),
				Topic: "invoices", Key: m.Metadata.Get("partition_key"), Payload: m.Payload, Headers: m.Metadata})
			if insertErr == nil || insertErr.Error() != ee.Error() {
				t.Fatalf("Publish error %q, Insert error %q: want the same", ee, insertErr)
			}
			// Nothing was written and the transaction is still usable.
			ok := Message("k", 2)
			if err := h.Publish(tx, a, "invoices", true, ok); err != nil {
				t.Fatalf("Publish after the rejected message: %v", err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			if _, err := h.Outbox.Get(context.Background(), ok.UUID); err != nil {
				t.Fatalf("the valid message of the transaction: %v", err)
			}
		})
	}
}

// Recorder is a Watermill publisher standing in for the broker: it records
// every message the relay publishes, in publish order.
type Recorder struct {
	mu   sync.Mutex
	msgs []*message.Message
}

// Publish implements message.Publisher.
func (r *Recorder) Publish(_ string, msgs ...*message.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, msgs...)
	return nil
}

// Close implements message.Publisher.
func (r *Recorder) Close() error { return nil }

// Snapshot returns the messages published so far.
func (r *Recorder) Snapshot() []*message.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*message.Message(nil), r.msgs...)
}

// WaitDistinct waits until n distinct message UUIDs were published (a
// minute at most: a hang guard, not a performance assertion).
func (r *Recorder) WaitDistinct(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		seen := map[string]bool{}
		for _, m := range r.Snapshot() {
			seen[m.UUID] = true
		}
		if len(seen) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages published after a minute", len(seen), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
