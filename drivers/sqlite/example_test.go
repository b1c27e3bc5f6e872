package sqlite_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/outboxkit/outboxkit/drivers/sqlite"
	"github.com/outboxkit/outboxkit/framework/outbox"
)

// Example writes an invoice and its event in one SQLite transaction and
// relays the event to Watermill's in-process pub/sub.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "outboxkit-example-*")
	defer os.RemoveAll(dir)

	db, err := sqlite.Open(filepath.Join(dir, "billing.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	drv, err := sqlite.New(db, sqlite.Config{})
	if err != nil {
		log.Fatal(err)
	}
	ob, _ := outbox.New(drv, outbox.Config{})
	if err := ob.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE invoices (id TEXT PRIMARY KEY, amount_cents INTEGER NOT NULL)`); err != nil {
		log.Fatal(err)
	}

	tx, _ := db.BeginTx(ctx, nil)
	_, _ = tx.ExecContext(ctx, `INSERT INTO invoices (id, amount_cents) VALUES (?, ?)`, "INV-1", 4250)
	ev, _ := outbox.NewJSONEvent("invoice.issued", "invoices", "patient-7", map[string]any{"invoice_id": "INV-1", "amount_cents": 4250})
	if err := ob.Insert(ctx, tx, ev); err != nil {
		log.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		log.Fatal(err)
	}

	pubsub := gochannel.NewGoChannel(gochannel.Config{Persistent: true}, watermill.NopLogger{})
	defer pubsub.Close()
	msgs, _ := pubsub.Subscribe(ctx, "invoices")
	relay, _ := outbox.NewRelay(drv, pubsub, outbox.RelayConfig{})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- relay.Run(runCtx) }()

	msg := <-msgs
	msg.Ack()
	fmt.Println(msg.UUID == ev.ID, msg.Metadata.Get(outbox.MetadataEventType), string(msg.Payload))
	stop()
	<-done
	// Output: true invoice.issued {"amount_cents":4250,"invoice_id":"INV-1"}
}
