package events_test

import (
	"context"
	"database/sql"
	"reflect"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	natsgo "github.com/nats-io/nats.go"

	outboxnats "github.com/outboxkit/outboxkit/brokers/nats"
	"github.com/outboxkit/outboxkit/drivers/mysql"
	"github.com/outboxkit/outboxkit/drivers/postgres"
	"github.com/outboxkit/outboxkit/examples/invoicing/events"
	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

// prefixPublisher publishes every message under prefix+topic, so that each
// test has its own NATS subjects (and stream) while the generated code keeps
// its fixed topic constants.
type prefixPublisher struct {
	message.Publisher
	prefix string
}

func (p prefixPublisher) Publish(topic string, msgs ...*message.Message) error {
	return p.Publisher.Publish(p.prefix+topic, msgs...)
}

// TestEndToEndPostgresNATS: generated insert helper -> PostgreSQL outbox ->
// relay -> NATS JetStream -> generated decoder, with real services.
func TestEndToEndPostgresNATS(t *testing.T) {
	t.Parallel()
	outboxtest.RequireService(t, outboxtest.Postgres, outboxtest.NATS)
	db, err := sql.Open("postgres", outboxtest.PostgresURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	table := outboxtest.UniqueName("ogen")
	drv, err := postgres.New(db, postgres.Config{Table: table})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = db.Exec(`DROP TABLE IF EXISTS "` + table + `", "` + table + `_migrations", "` + table + `_acks"`)
	})
	roundTrip(t, db, drv)
}

// TestEndToEndMySQLNATS is the same round trip on MySQL/MariaDB.
func TestEndToEndMySQLNATS(t *testing.T) {
	t.Parallel()
	outboxtest.RequireService(t, outboxtest.MySQL, outboxtest.NATS)
	db, err := mysql.Open(outboxtest.MySQLDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	table := outboxtest.UniqueName("ogen")
	drv, err := mysql.New(db, mysql.Config{Table: table})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, suffix := range []string{"", "_relay_lock", "_migrations"} {
			_, _ = db.Exec("DROP TABLE IF EXISTS `" + table + suffix + "`")
		}
	})
	roundTrip(t, db, drv)
}

func roundTrip(t *testing.T, db *sql.DB, drv outboxdriver.Driver) {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	t.Cleanup(cancel)
	ob, err := outbox.New(drv, outbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ob.Migrate(ctx); err != nil {
		t.Fatalf("Migrate: %v", err)
	}

	// A fresh memory stream over this test's own subjects.
	stream := outboxtest.UniqueName("ogen")
	prefix := stream + "."
	cfg := outboxnats.Config{URL: outboxtest.NATSURL(), Durable: stream}
	if err := outboxnats.EnsureStream(ctx, cfg, outboxnats.StreamConfig{Name: stream, Subjects: []string{prefix + ">"}, MemoryStorage: true}); err != nil {
		t.Fatalf("EnsureStream: %v", err)
	}
	t.Cleanup(func() {
		if nc, err := natsgo.Connect(outboxtest.NATSURL()); err == nil {
			if js, err := nc.JetStream(); err == nil {
				_ = js.DeleteStream(stream)
			}
			nc.Close()
		}
	})
	pub, err := outboxnats.NewPublisher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	sub, err := outboxnats.NewSubscriber(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	msgs, err := sub.Subscribe(ctx, prefix+events.InvoiceIssuedTopic)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}

	relay, err := outbox.NewRelay(drv, prefixPublisher{pub, prefix}, outbox.RelayConfig{PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	relayCtx, stopRelay := context.WithCancel(ctx)
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(relayCtx) }()
	t.Cleanup(func() {
		stopRelay()
		<-relayDone
	})

	// A rolled-back insert first: if it were ever published, it would reach
	// the subject before the committed one.
	rolledBack := validInvoice()
	rolledBack.InvoiceID = "0190b1f4-7c1e-7a6e-9f3a-2b1c4d5e6fff"
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.InsertInvoiceIssued(ctx, ob, tx, rolledBack); err != nil {
		t.Fatalf("InsertInvoiceIssued: %v", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}

	in := validInvoice()
	in.IssuedAt = time.Date(2025, 3, 14, 10, 30, 0, 123456789, time.FixedZone("CET", 3600))
	note := "Remboursement 100 % — tiers payant"
	in.Note = &note
	tx, err = db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := events.InsertInvoiceIssued(ctx, ob, tx, in)
	if err != nil {
		t.Fatalf("InsertInvoiceIssued: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	var msg *message.Message
	select {
	case msg = <-msgs:
	case <-ctx.Done():
		t.Fatal("no message from NATS before the deadline")
	}
	defer msg.Ack()
	if msg.UUID != ev.ID || msg.Metadata.Get(outbox.MetadataEventID) != ev.ID || msg.Metadata.Get(outbox.MetadataKey) != in.InvoiceID {
		t.Fatalf("message uuid %q metadata %v, want event %s key %s", msg.UUID, msg.Metadata, ev.ID, in.InvoiceID)
	}

	dec, err := events.NewDecoder(events.DecoderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var got *events.InvoiceIssued
	dec.OnInvoiceIssued(func(_ context.Context, _ *message.Message, ev events.InvoiceIssued) error {
		got = &ev
		return nil
	})
	if err := dec.Handle(msg); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if got == nil {
		t.Fatal("handler not called")
	}
	// Decimals and money exact, the timestamp in UTC to the nanosecond:
	// equal to what was inserted, with the timestamp converted to UTC.
	want := in
	want.IssuedAt = in.IssuedAt.UTC()
	if !reflect.DeepEqual(*got, want) {
		t.Fatalf("decoded\n%+v\nwant\n%+v", *got, want)
	}
	if got.IssuedAt.Location() != time.UTC || got.Lines[1].UnitPrice.Amount != "411.4666666666666666666666" || got.Amount.Amount != "1234.50" {
		t.Fatalf("issued_at %v, lines %+v", got.IssuedAt, got.Lines)
	}
}

// validInvoice is an InvoiceIssued that passes Validate, with values that
// catch float rounding (decimals) and time zone loss (a non-UTC time).
func validInvoice() events.InvoiceIssued {
	paris := time.FixedZone("CET", 3600)
	return events.InvoiceIssued{
		InvoiceID: "0190b1f4-7c1e-7a6e-9f3a-2b1c4d5e6f70",
		PatientID: "0190b1f4-7c1e-7a6e-9f3a-2b1c4d5e6f71",
		Number:    "INV-2025-000042",
		Amount:    events.Money{Amount: "1234.50", Currency: "EUR"},
		IssuedAt:  time.Date(2025, 3, 14, 10, 30, 0, 0, paris),
		Lines: []events.InvoiceLine{
			{ActCode: "ABCD123", Label: "Consultation", Quantity: 1, UnitPrice: events.Money{Amount: "0.10", Currency: "EUR"}},
			{ActCode: "EFGH456", Label: "Soins", Quantity: 3, UnitPrice: events.Money{Amount: "411.4666666666666666666666", Currency: "EUR"}},
		},
		Status: events.InvoiceStatusIssued,
	}
}
