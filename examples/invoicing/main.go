// Command invoicing is the user's own story, end to end: a care-center billing
// service saves an invoice and an InvoiceIssued event in ONE transaction; the
// relay delivers it to the health-insurance teletransmission service; the
// teletransmission consumer acknowledges it (SUCCESS); while the gateway is
// down, deliveries fail, are retried with backoff and finally marked dead; the
// operator resends them with Retry once the gateway is back. An invoice whose
// transaction failed is never sent.
//
// It needs PostgreSQL (OUTBOX_DB_URL, default the local test database). The
// broker is Watermill's in-process gochannel so the example runs anywhere;
// swap in any Watermill publisher (see brokers/) for production.
//
//	go run ./examples/invoicing
package main

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/outboxkit/outboxkit/drivers/postgres"
	"github.com/outboxkit/outboxkit/framework/outbox"
)

// Invoice is the business row.
type Invoice struct {
	ID        string `json:"invoice_id"`
	PatientID string `json:"patient_id"`
	Amount    string `json:"amount"` // decimal as a string, never a float
	Currency  string `json:"currency"`
}

// InvoiceIssued is the event type and topic the teletransmission service listens to.
const (
	InvoiceIssued = "care.invoice.issued"
	TopicInvoices = "care.invoices"
)

// Billing is the care center's billing service.
type Billing struct {
	db *sql.DB
	ob *outbox.Outbox
}

// IssueInvoice saves the invoice and its InvoiceIssued event atomically.
func (b *Billing) IssueInvoice(ctx context.Context, inv Invoice) error {
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	if _, err := tx.ExecContext(ctx, `INSERT INTO invoices (id, patient_id, amount, currency) VALUES ($1, $2, $3, $4)`,
		inv.ID, inv.PatientID, inv.Amount, inv.Currency); err != nil {
		return fmt.Errorf("save invoice %s: %w", inv.ID, err)
	}
	ev, err := outbox.NewJSONEvent(InvoiceIssued, TopicInvoices, inv.ID, inv)
	if err != nil {
		return err
	}
	if err := b.ob.Insert(ctx, tx, ev); err != nil {
		return err
	}
	if inv.Amount == "" || inv.Amount[0] == '-' {
		// A business rule fails after the writes: the transaction rolls
		// back, so the event must never be sent.
		return fmt.Errorf("invoice %s: invalid amount %q", inv.ID, inv.Amount)
	}
	return tx.Commit()
}

// Gateway stands for the teletransmission API behind the broker: while it is
// down every publish fails.
type Gateway struct {
	message.Publisher
	down atomic.Bool
}

// Publish implements message.Publisher.
func (g *Gateway) Publish(topic string, msgs ...*message.Message) error {
	if g.down.Load() {
		return errors.New("teletransmission gateway unreachable: connection refused")
	}
	return g.Publisher.Publish(topic, msgs...)
}

// Teletransmission consumes InvoiceIssued and acknowledges each invoice once
// (SUCCESS), deduplicating redeliveries by event id.
type Teletransmission struct {
	mu    sync.Mutex
	acked map[string]string // event id -> invoice id
	dups  int
}

func (t *Teletransmission) consume(ctx context.Context, msgs <-chan *message.Message) {
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-msgs:
			if !ok {
				return
			}
			var inv Invoice
			if err := json.Unmarshal(m.Payload, &inv); err != nil {
				m.Nack()
				continue
			}
			t.mu.Lock()
			if _, seen := t.acked[m.UUID]; seen {
				t.dups++
			} else {
				t.acked[m.UUID] = inv.ID
			}
			t.mu.Unlock()
			m.Ack()
		}
	}
}

func (t *Teletransmission) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.acked)
}

// Summary is what the run did; the numbers must add up.
type Summary struct {
	Issued, RolledBack, Dead, Resent, Acknowledged, Duplicates int
}

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := run(ctx, os.Getenv("OUTBOX_DB_URL"), slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	if err != nil {
		fmt.Fprintln(os.Stderr, "invoicing:", err)
		os.Exit(1)
	}
	fmt.Printf("issued %d, rolled back %d (never sent), dead while gateway down %d, resent %d, acknowledged %d, duplicates skipped %d\n",
		s.Issued, s.RolledBack, s.Dead, s.Resent, s.Acknowledged, s.Duplicates)
}

func run(ctx context.Context, dbURL string, logger *slog.Logger) (*Summary, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	db, err := sql.Open("postgres", cmp.Or(dbURL, "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"))
	if err != nil {
		return nil, err
	}
	defer db.Close()
	suffix := fmt.Sprintf("%d_%d", os.Getpid(), time.Now().UnixNano()%1e6)
	table := "invoicing_outbox_" + suffix
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS invoices (id text PRIMARY KEY, patient_id text NOT NULL,
		amount numeric(12,2) NOT NULL, currency char(3) NOT NULL)`); err != nil {
		return nil, fmt.Errorf("create invoices: %w", err)
	}
	drv, err := postgres.New(db, postgres.Config{Table: table})
	if err != nil {
		return nil, err
	}
	defer db.Exec(`DROP TABLE IF EXISTS "` + table + `", "` + table + `_migrations"`) //nolint:errcheck
	ob, err := outbox.New(drv, outbox.Config{Logger: logger})
	if err != nil {
		return nil, err
	}
	if err := ob.Migrate(ctx); err != nil {
		return nil, err
	}

	broker := gochannel.NewGoChannel(gochannel.Config{Persistent: true}, watermill.NewSlogLogger(logger))
	defer broker.Close()
	tele := &Teletransmission{acked: map[string]string{}}
	msgs, err := broker.Subscribe(ctx, TopicInvoices)
	if err != nil {
		return nil, err
	}
	go tele.consume(ctx, msgs)

	gateway := &Gateway{Publisher: broker}
	relay, err := outbox.NewRelay(drv, gateway, outbox.RelayConfig{
		PollInterval: 20 * time.Millisecond, MaxAttempts: 3,
		BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond, Logger: logger,
	})
	if err != nil {
		return nil, err
	}
	relayCtx, stopRelay := context.WithCancel(ctx)
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(relayCtx) }()
	defer func() { stopRelay(); <-relayDone }()

	billing := &Billing{db: db, ob: ob}
	s := &Summary{}
	issue := func(inv Invoice) error {
		inv.ID = inv.ID + "-" + suffix
		if err := billing.IssueInvoice(ctx, inv); err != nil {
			s.RolledBack++
			return nil
		}
		s.Issued++
		return nil
	}
	for i := range 5 {
		_ = issue(Invoice{ID: fmt.Sprintf("INV-%03d", i), PatientID: fmt.Sprintf("P-%d", i%3), Amount: "25.00", Currency: "EUR"})
	}
	_ = issue(Invoice{ID: "INV-BAD", PatientID: "P-9", Amount: "-1.00", Currency: "EUR"})
	if err := waitFor(ctx, func() bool { return tele.count() == s.Issued }); err != nil {
		return nil, fmt.Errorf("first invoices not acknowledged: %w", err)
	}

	// The gateway goes down: new invoices fail, back off, and end dead.
	gateway.down.Store(true)
	for i := range 3 {
		_ = issue(Invoice{ID: fmt.Sprintf("INV-OUTAGE-%d", i), PatientID: "P-1", Amount: "40.00", Currency: "EUR"})
	}
	if err := waitFor(ctx, func() bool {
		st, err := ob.Stats(ctx)
		return err == nil && st.Dead == 3
	}); err != nil {
		return nil, fmt.Errorf("outage invoices not dead: %w", err)
	}
	st, err := ob.Stats(ctx)
	if err != nil {
		return nil, err
	}
	s.Dead = int(st.Dead)

	// The gateway is back: the operator resends every event not acknowledged.
	gateway.down.Store(false)
	n, err := ob.RetryDead(ctx, InvoiceIssued)
	if err != nil {
		return nil, err
	}
	s.Resent = int(n)
	if err := waitFor(ctx, func() bool {
		st, err := ob.Stats(ctx)
		return err == nil && st.Pending == 0 && st.Dead == 0 && tele.count() == s.Issued
	}); err != nil {
		return nil, fmt.Errorf("resent invoices not acknowledged: %w", err)
	}
	tele.mu.Lock()
	s.Acknowledged, s.Duplicates = len(tele.acked), tele.dups
	for _, invID := range tele.acked {
		if invID == "INV-BAD-"+suffix {
			tele.mu.Unlock()
			return nil, errors.New("a rolled-back invoice was sent")
		}
	}
	tele.mu.Unlock()
	if s.Acknowledged != s.Issued || s.Resent != s.Dead {
		return s, fmt.Errorf("numbers do not add up: %+v", *s)
	}
	return s, nil
}

func waitFor(ctx context.Context, cond func() bool) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
