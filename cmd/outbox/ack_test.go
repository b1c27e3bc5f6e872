package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/outboxkit/outboxkit/framework/outbox"
)

// TestAckCommands: status counts acknowledgments, list filters and shows
// them, show prints the rejection reason, retry --all-unacknowledged
// resends and re-arms.
func TestAckCommands(t *testing.T) {
	t.Parallel()
	d := postgresDialect()
	table, db, ob := setupDialect(t, d)
	env := map[string]string{"OUTBOX_DB_URL": d.url, "OUTBOX_TABLE": table}
	ctx := context.Background()
	silent := &outbox.Event{Type: "care.invoice.issued", Topic: "invoices", Key: "INV-1", AwaitAck: &outbox.AckPolicy{Deadline: time.Millisecond}}
	refused := &outbox.Event{Type: "care.invoice.issued", Topic: "invoices", Key: "INV-2", AwaitAck: &outbox.AckPolicy{Deadline: time.Hour}}
	tx, _ := db.Begin()
	if err := ob.Insert(ctx, tx, silent, refused); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	// Both were delivered a while ago; the receiver rejects one and never
	// answers the other, which the sweep gives up on (MaxResends 0).
	if _, err := db.Exec(`UPDATE "` + table + `" SET status = 'delivered', delivered_at = now() - interval '1 minute'`); err != nil {
		t.Fatal(err)
	}
	tx, _ = db.Begin()
	if err := ob.Acknowledge(ctx, tx, refused.ID, outbox.AckRejection("unknown insured \x1b[31mperson")); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	relay, err := outbox.NewRelay(ob.Driver(), gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{}), outbox.RelayConfig{AckSweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if sw, err := relay.SweepAcks(ctx); err != nil || sw.Unacknowledged != 1 || sw.Resent != 0 {
		t.Fatalf("SweepAcks = %+v, %v", sw, err)
	}

	r := runCLI(t, env, "status", "-o", "json")
	var s struct {
		Ack map[string]float64 `json:"ack"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &s) != nil || s.Ack["unacknowledged"] != 1 || s.Ack["rejected"] != 1 || s.Ack["awaiting"] != 0 {
		t.Fatalf("status: %+v", r)
	}
	if r = runCLI(t, env, "status"); r.code != 0 || !strings.Contains(r.stdout, "ack unacknowledged") {
		t.Fatalf("status table: %+v", r)
	}
	r = runCLI(t, env, "list", "--ack", "unacknowledged")
	if r.code != 0 || !strings.Contains(r.stdout, silent.ID) || strings.Contains(r.stdout, refused.ID) || !strings.Contains(r.stdout, "ACK") {
		t.Fatalf("list --ack unacknowledged: %+v", r)
	}
	if r = runCLI(t, env, "list", "--ack", "maybe"); r.code != exitUsage || !strings.Contains(r.stderr, "--ack") {
		t.Fatalf("list --ack maybe: %+v", r)
	}
	r = runCLI(t, env, "show", refused.ID)
	if r.code != 0 || !strings.Contains(r.stdout, "rejected") || !strings.Contains(r.stdout, "unknown insured") || strings.Contains(r.stdout, "\x1b") {
		t.Fatalf("show: %+v", r)
	}
	// The web console: an ack column and filter, the state on the event page.
	base := startUI(t, table)
	code, body, _ := get(t, uiClient(), base+"/events?ack=unacknowledged")
	if code != 200 || !strings.Contains(body, silent.ID) || strings.Contains(body, refused.ID) || !strings.Contains(body, `<td class="ack">unacknowledged</td>`) {
		t.Fatalf("console events?ack=unacknowledged: %d\n%.2000s", code, body)
	}
	if code, _, _ = get(t, uiClient(), base+"/events?ack=maybe"); code != 400 {
		t.Fatalf("console events?ack=maybe: %d, want 400", code)
	}
	code, body, _ = get(t, uiClient(), base+"/events/"+refused.ID)
	if code != 200 || !strings.Contains(body, "acknowledgment") || !strings.Contains(body, "rejected: unknown insured") || strings.Contains(body, "\x1b") {
		t.Fatalf("console event page: %d\n%.2000s", code, body)
	}
	if r = runCLI(t, env, "retry", "--all-unacknowledged", "--dry-run"); r.code != 0 || !strings.Contains(r.stdout, "would retry 1 event(s)") {
		t.Fatalf("retry --dry-run: %+v", r)
	}
	if r = runCLI(t, env, "retry", "--all-unacknowledged", "--all-dead"); r.code != exitUsage {
		t.Fatalf("two retry modes: %+v", r)
	}
	if r = runCLI(t, env, "retry", "--all-unacknowledged", "--yes"); r.code != 0 || !strings.Contains(r.stdout, "retried 1 event(s)") {
		t.Fatalf("retry: %+v", r)
	}
	e, err := ob.Get(ctx, silent.ID)
	if err != nil || e.Status != outbox.StatusPending || e.Ack == nil || e.Ack.Status != outbox.AckAwaiting {
		t.Fatalf("after retry: %+v, %v", e, err)
	}
}
