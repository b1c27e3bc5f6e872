// Command quickstart shows the transactional outbox working end to end with
// no external service: a care-center billing service writes invoices and
// their "invoice.issued" events in one SQLite transaction each, a relay
// publishes the events to an embedded NATS JetStream server, and a consumer
// applies each invoice exactly once to its own ledger database.
//
// Along the way some transactions are rolled back on purpose, the relay is
// stopped mid-stream and a new one started, the consumer "loses" a few acks
// (as if it crashed after committing), and an operator resends some delivered
// events. The final summary shows that the numbers add up; the program exits
// with status 1 if they do not.
//
//	go run ./examples/quickstart
//
// Environment:
//
//	OUTBOX_DB_URL      postgres://... or mysql://user:pass@host:3306/db runs
//	                   the same scenario on PostgreSQL or MySQL/MariaDB
//	                   instead of a temporary SQLite file.
//	OUTBOX_BROKER_URL  nats://... publishes to that NATS server (JetStream
//	                   enabled) instead of the embedded one; amqp://... and
//	                   redis://... use RabbitMQ or Redis Streams (brokers/).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
)

func main() {
	cfg := defaultConfig()
	cfg.DBURL = os.Getenv("OUTBOX_DB_URL")
	cfg.BrokerURL = os.Getenv("OUTBOX_BROKER_URL")
	if isTerminal(os.Stderr) {
		cfg.Progress = os.Stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	sum, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
	sum.Print(os.Stdout)
	if problems := sum.Check(); len(problems) > 0 {
		fmt.Fprintln(os.Stdout, "\nFAILED: the numbers do not add up:")
		for _, p := range problems {
			fmt.Fprintln(os.Stdout, "  -", p)
		}
		os.Exit(1)
	}
	fmt.Fprintln(os.Stdout, "\nOK: every committed invoice was applied exactly once; nothing rolled back was sent.")
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
