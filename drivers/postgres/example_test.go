package postgres_test

import (
	"context"
	"database/sql"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/outboxkit/outboxkit/drivers/postgres"
	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

// readmeUsage holds the README's usage snippet verbatim between the markers;
// TestReadmeUsage runs it and checks the README still shows the same lines.
func readmeUsage(ctx context.Context, db *sql.DB, table string, broker message.Publisher) (*outbox.Event, func(), error) {
	// README:begin
	drv, err := postgres.New(db, postgres.Config{Table: table})
	if err != nil {
		return nil, nil, err
	}
	ob, _ := outbox.New(drv, outbox.Config{})
	if err := ob.Migrate(ctx); err != nil {
		return nil, nil, err
	}

	// In the transaction that saves the invoice: the event commits with it.
	tx, _ := db.BeginTx(ctx, nil)
	// ... tx.ExecContext(ctx, "INSERT INTO invoices ...") ...
	ev, _ := outbox.NewJSONEvent("care.invoice.issued", "invoices", "INV-001", map[string]string{"amount": "25.00"})
	if err := ob.Insert(ctx, tx, ev); err != nil {
		return nil, nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, nil, err
	}

	// The relay publishes committed events through any Watermill publisher.
	relay, _ := outbox.NewRelay(drv, broker, outbox.RelayConfig{})
	relayCtx, stop := context.WithCancel(ctx)
	go relay.Run(relayCtx)
	// README:end
	return ev, stop, nil
}

func TestReadmeUsage(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(src), "\t// README:begin\n")
	snippet, _, _ := strings.Cut(rest, "\t// README:end\n")
	for line := range strings.Lines(snippet) {
		if l := strings.TrimSpace(line); l != "" && !strings.Contains(string(readme), l) {
			t.Fatalf("README.md usage snippet is out of date; missing line:\n%s", l)
		}
	}

	db := openDB(t)
	table := outboxtest.UniqueName("readme")
	t.Cleanup(func() {
		_, _ = db.Exec(`DROP TABLE IF EXISTS "` + table + `", "` + table + `_migrations", "` + table + `_acks"`)
	})
	broker := gochannel.NewGoChannel(gochannel.Config{Persistent: true}, watermill.NopLogger{})
	ctx := context.Background()
	received, _ := broker.Subscribe(ctx, "invoices")
	ev, stop, err := readmeUsage(ctx, db, table, broker)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	select {
	case msg := <-received:
		msg.Ack()
		if msg.UUID != ev.ID || msg.Metadata.Get(outbox.MetadataEventType) != "care.invoice.issued" || string(msg.Payload) != `{"amount":"25.00"}` {
			t.Fatalf("published %s %v %s", msg.UUID, msg.Metadata, msg.Payload)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("event not delivered")
	}
}
