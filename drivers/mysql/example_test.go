package mysql_test

import (
	"context"
	"log"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/outboxkit/outboxkit/drivers/mysql"
	"github.com/outboxkit/outboxkit/framework/outbox"
)

// Example wires the MySQL driver into an outbox writer and a relay. (It has
// no Output line: it needs a running server, so `go test` compiles it only.)
func Example() {
	ctx := context.Background()
	// Open adds parseTime=true, loc=UTC and interpolateParams=true.
	db, err := mysql.Open("app:secret@tcp(127.0.0.1:3306)/app")
	if err != nil {
		log.Fatal(err)
	}
	drv, err := mysql.New(db, mysql.Config{Table: "outbox"})
	if err != nil {
		log.Fatal(err)
	}
	ob, err := outbox.New(drv, outbox.Config{})
	if err != nil {
		log.Fatal(err)
	}
	if err := ob.Migrate(ctx); err != nil {
		log.Fatal(err)
	}

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	// ... business writes on tx ...
	ev, _ := outbox.NewJSONEvent("invoice.issued", "invoices", "inv-42", map[string]any{"amount": 4200})
	if err := ob.Insert(ctx, tx, ev); err != nil {
		log.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		log.Fatal(err)
	}

	broker := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{}) // a real broker in production
	relay, err := outbox.NewRelay(drv, broker, outbox.RelayConfig{})
	if err != nil {
		log.Fatal(err)
	}
	_ = relay.Run(ctx) // until ctx is cancelled
}
