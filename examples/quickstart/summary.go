package main

import (
	"fmt"
	"io"
	"time"
)

// Summary is what one run wrote, delivered and applied, counted from the
// databases and the broker at the end.
type Summary struct {
	Database, Broker string

	// Service side.
	Written     int   // invoice transactions that wrote an event
	Committed   int   // of which committed
	RolledBack  int   // of which rolled back on purpose
	InvoiceRows int64 // rows in the invoices table
	BilledCents int64 // sum of committed invoices

	// Outbox table and relays.
	OutboxDelivered, OutboxPending, OutboxDead int64
	PendingWhileDown                           int64 // pending after relay 1 stopped, before relay 2 started
	DeliveredByRelay1, DeliveredByRelay2       int64 // broker-acknowledged publishes per relay
	Published                                  int64 // all broker-acknowledged publishes
	Resent                                     int64 // delivered events the operator resent

	// Broker.
	JetStream         bool  // the broker is NATS JetStream: the stream is counted
	StreamMessages    int64 // messages stored in the JetStream stream
	StreamWithEventID int64 // of which carry a committed event's id as Nats-Msg-Id

	// Consumer side.
	Received          int64 // deliveries seen, redeliveries included
	Applied           int64 // applied to the ledger (first delivery of an id)
	Deduplicated      int64 // acked and skipped: id already processed
	LostAcks          int64 // acks withheld on purpose after commit
	ConsumerErrors    int64
	LedgerRows        int64
	LedgerCents       int64
	RolledBackApplied int64 // ledger rows whose event was rolled back
	UnknownApplied    int64 // ledger rows whose event is not a committed one

	Elapsed time.Duration
}

// Print writes the summary as a small report.
func (s *Summary) Print(w io.Writer) {
	fmt.Fprintf(w, "outboxkit quickstart: care-center billing\n  database  %s\n  broker    %s\n", s.Database, s.Broker)
	section := func(title string) { fmt.Fprintf(w, "\n%s\n", title) }
	row := func(label string, v any, note string) { fmt.Fprintf(w, "  %-22s %6v  %s\n", label, v, note) }
	section("billing service (one transaction per invoice: invoice row + invoice.issued event)")
	row("written", s.Written, "transactions that inserted an invoice and its event")
	row("committed", s.Committed, fmt.Sprintf("invoices table holds %d rows, %s billed", s.InvoiceRows, euros(s.BilledCents)))
	row("rolled back", s.RolledBack, "on purpose (coverage check failed): invoice and event vanish together")
	section("outbox relay")
	row("published by relay 1", s.DeliveredByRelay1, "then stopped mid-stream (context cancelled)")
	row("pending while down", s.PendingWhileDown, "when relay 2 started")
	row("published by relay 2", s.DeliveredByRelay2, "a new relay took over where relay 1 stopped")
	row("resent by operator", s.Resent, "Outbox.Retry on delivered events: same id republished")
	row("publishes acked", s.Published, "relay publishes acknowledged by the broker")
	row("delivered", s.OutboxDelivered, fmt.Sprintf("outbox rows delivered (pending %d, dead %d)", s.OutboxPending, s.OutboxDead))
	if s.JetStream {
		section("broker (NATS JetStream)")
		row("stream messages", s.StreamMessages, fmt.Sprintf("%d republished ids dropped by Nats-Msg-Id dedup", s.Published-s.StreamMessages))
		row("with event id", s.StreamWithEventID, "messages whose Nats-Msg-Id is a committed event id")
	}
	section("ledger consumer (idempotent: typed decoder behind the inbox, in its own transaction)")
	row("received", s.Received, "deliveries, redeliveries included")
	row("applied", s.Applied, fmt.Sprintf("ledger holds %d rows, %s", s.LedgerRows, euros(s.LedgerCents)))
	row("deduplicated", s.Deduplicated, fmt.Sprintf("acked and skipped (%d acks withheld on purpose after commit)", s.LostAcks))
	row("rolled back applied", s.RolledBackApplied, "must be 0")
	row("errors", s.ConsumerErrors, "")
	fmt.Fprintf(w, "\nelapsed %s\n", s.Elapsed.Round(time.Millisecond))
}

func euros(cents int64) string { return fmt.Sprintf("EUR %d.%02d", cents/100, cents%100) }

// Check returns every way the numbers fail to add up (none on success).
func (s *Summary) Check() []string {
	var p []string
	expect := func(ok bool, format string, args ...any) {
		if !ok {
			p = append(p, fmt.Sprintf(format, args...))
		}
	}
	c := int64(s.Committed)
	expect(s.Committed > 0 && s.RolledBack > 0, "the scenario must commit and roll back some invoices (committed %d, rolled back %d)", s.Committed, s.RolledBack)
	expect(s.Written == s.Committed+s.RolledBack, "written %d != committed %d + rolled back %d", s.Written, s.Committed, s.RolledBack)
	expect(s.InvoiceRows == c, "invoices table has %d rows, committed %d", s.InvoiceRows, s.Committed)
	expect(s.OutboxDelivered == c, "outbox delivered %d != committed %d", s.OutboxDelivered, s.Committed)
	expect(s.OutboxPending == 0 && s.OutboxDead == 0, "outbox still has %d pending and %d dead events", s.OutboxPending, s.OutboxDead)
	expect(s.DeliveredByRelay1 > 0 && s.DeliveredByRelay2 > 0, "both relays must deliver (relay 1 %d, relay 2 %d)", s.DeliveredByRelay1, s.DeliveredByRelay2)
	expect(s.PendingWhileDown > 0, "no events were pending while the relay was down")
	expect(s.Published == s.DeliveredByRelay1+s.DeliveredByRelay2, "publishes %d != relay 1 %d + relay 2 %d", s.Published, s.DeliveredByRelay1, s.DeliveredByRelay2)
	expect(s.Published >= c+s.Resent, "publishes %d < committed %d + resent %d", s.Published, s.Committed, s.Resent)
	expect(!s.JetStream || s.StreamMessages == c, "stream holds %d messages, committed %d (broker dedup by Nats-Msg-Id failed or events were lost)", s.StreamMessages, s.Committed)
	expect(!s.JetStream || s.StreamWithEventID == c, "%d of %d stream messages carry a committed event id as Nats-Msg-Id", s.StreamWithEventID, s.StreamMessages)
	expect(s.Applied == c, "applied %d != committed %d", s.Applied, s.Committed)
	expect(s.LedgerRows == c && s.LedgerCents == s.BilledCents, "ledger has %d rows / %s, committed %d / %s",
		s.LedgerRows, euros(s.LedgerCents), s.Committed, euros(s.BilledCents))
	expect(s.Received == s.Applied+s.Deduplicated+s.ConsumerErrors, "received %d != applied %d + deduplicated %d + errors %d",
		s.Received, s.Applied, s.Deduplicated, s.ConsumerErrors)
	expect(s.Deduplicated >= s.LostAcks && s.LostAcks > 0, "deduplicated %d < acks withheld %d", s.Deduplicated, s.LostAcks)
	expect(s.RolledBackApplied == 0, "%d rolled-back invoices were applied", s.RolledBackApplied)
	expect(s.UnknownApplied == 0, "%d ledger rows do not come from a committed event", s.UnknownApplied)
	return p
}
