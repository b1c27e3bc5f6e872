package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxack"
)

// TestAckOverReplyTopic runs the whole story on one SQLite file and
// Watermill's gochannel: a relay publishes events awaiting an answer; the
// receiver's handler, under outboxack.Reply, accepts most, rejects one and
// stays silent once; the sender's outboxack.Handler records the replies;
// the silent event is resent after its deadline and then acknowledged.
func TestAckOverReplyTopic(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pubsub := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 64}, watermill.NopLogger{})
	defer pubsub.Close()

	policy := outbox.AckPolicy{Deadline: 300 * time.Millisecond, MaxResends: 5}
	var events []*outbox.Event
	for i := range 5 {
		ev := &outbox.Event{Type: "invoice.sent", Topic: "invoices", Key: "k", Payload: []byte{byte('0' + i)}, AwaitAck: &policy}
		events = append(events, ev)
	}
	b.insert(t, events...)
	rejectID, silentID := events[1].ID, events[2].ID

	var mu sync.Mutex
	seen := map[string]int{}
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	receiver := router.AddConsumerHandler("receiver", "invoices", pubsub, func(msg *message.Message) error {
		mu.Lock()
		seen[msg.UUID]++
		n := seen[msg.UUID]
		mu.Unlock()
		switch {
		case msg.UUID == rejectID:
			return outboxack.Reject("invalid insured number")
		case msg.UUID == silentID && n == 1:
			return errSilent // no answer the first time
		}
		return nil
	})
	receiver.AddMiddleware(swallowSilent, outboxack.Reply(pubsub, "invoice-replies"))
	var answered sync.Map
	handler, err := outboxack.Handler(outboxack.Config{Outbox: b.ob, OnAnswer: func(_ context.Context, _ *sql.Tx, id string, o outbox.AckOutcome) error {
		answered.Store(id, o)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	router.AddConsumerHandler("sender-replies", "invoice-replies", pubsub, handler)
	go func() { _ = router.Run(ctx) }()
	<-router.Running()

	relay, err := outbox.NewRelay(b.drv, pubsub, outbox.RelayConfig{AckSweepInterval: 20 * time.Millisecond, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = relay.Run(ctx) }()

	deadline := time.Now().Add(30 * time.Second)
	for {
		done := 0
		for _, ev := range events {
			if s, err := b.ob.Get(ctx, ev.ID); err == nil && s.Ack != nil && s.Ack.Status != outbox.AckAwaiting {
				done++
			}
		}
		if done == len(events) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events answered after 30s", done, len(events))
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, ev := range events {
		s, err := b.ob.Get(ctx, ev.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := outbox.AckAcknowledged
		if ev.ID == rejectID {
			want = outbox.AckRejected
		}
		if s.Ack.Status != want {
			t.Fatalf("event %s: ack %s, want %s", ev.ID, s.Ack.Status, want)
		}
		if _, ok := answered.Load(ev.ID); !ok {
			t.Fatalf("OnAnswer not called for %s", ev.ID)
		}
	}
	if s, _ := b.ob.Get(ctx, rejectID); s.Ack.Reason != "invalid insured number" {
		t.Fatalf("rejection reason %q", s.Ack.Reason)
	}
	if s, _ := b.ob.Get(ctx, silentID); s.Ack.Resends < 1 {
		t.Fatalf("silent event acknowledged with %d resends, want at least 1", s.Ack.Resends)
	}
	mu.Lock()
	if seen[silentID] < 2 {
		t.Fatalf("silent event seen %d times by the receiver, want the resend too", seen[silentID])
	}
	mu.Unlock()
}

var errSilent = errors.New("receiver stays silent")

// swallowSilent acknowledges the message the receiver chose not to answer
// (so that only the sender's resend brings it back).
func swallowSilent(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		out, err := h(msg)
		if errors.Is(err, errSilent) {
			return out, nil
		}
		return out, err
	}
}

// TestAckHandlerHostileReplies feeds the reply handler messages no sender
// wrote: each gets a clear error (or, with DropInvalid, is dropped), none
// panics, and a hostile reason is stored sanitized.
func TestAckHandlerHostileReplies(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ev := &outbox.Event{Type: "t", Topic: "x"}
	ev.AwaitAck = &outbox.AckPolicy{Deadline: 10 * time.Minute, MaxResends: 5, ResendBackoff: 30 * time.Minute}
	plain := &outbox.Event{Type: "t", Topic: "x"}
	b.insert(t, ev, plain)
	handler, err := outboxack.Handler(outboxack.Config{Outbox: b.ob})
	if err != nil {
		t.Fatal(err)
	}
	reply := func(id, status, payload string) *message.Message {
		m := message.NewMessage(watermill.NewUUID(), []byte(payload))
		if id != "" {
			m.Metadata.Set(outboxack.MetadataEventID, id)
		}
		if status != "" {
			m.Metadata.Set(outboxack.MetadataStatus, status)
		}
		return m
	}
	for name, c := range map[string]struct {
		msg  *message.Message
		want error
	}{
		"no event id":      {reply("", "SUCCESS", ""), outboxack.ErrInvalidReply},
		"garbage event id": {reply("\xff\x00garbage", "SUCCESS", ""), outbox.ErrAckNotFound},
		"huge event id":    {reply(strings.Repeat("a", 1<<16), "SUCCESS", ""), outboxack.ErrInvalidReply},
		"unknown event":    {reply("0190f7c4-0000-7000-8000-000000000000", "SUCCESS", ""), outbox.ErrAckNotFound},
		"no ack awaited":   {reply(plain.ID, "SUCCESS", ""), outbox.ErrAckNotFound},
		"unknown status":   {reply(ev.ID, "MAYBE", ""), outboxack.ErrInvalidReply},
		"missing status":   {reply(ev.ID, "", ""), outboxack.ErrInvalidReply},
	} {
		if err := handler(c.msg); !errors.Is(err, c.want) {
			t.Fatalf("%s: %v, want %v", name, err, c.want)
		}
	}
	drop, err := outboxack.Handler(outboxack.Config{Outbox: b.ob, DropInvalid: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := drop(reply("", "", "")); err != nil {
		t.Fatalf("DropInvalid: %v", err)
	}
	hostile := "bad \xff utf-8 \x00 nul " + strings.Repeat("é", outbox.MaxAckReasonBytes)
	if err := handler(reply(ev.ID, "rejected", hostile)); err != nil {
		t.Fatalf("hostile reason: %v", err)
	}
	s, err := b.ob.Get(context.Background(), ev.ID)
	if err != nil {
		t.Fatal(err)
	}
	if s.Ack.Status != outbox.AckRejected || len(s.Ack.Reason) > outbox.MaxAckReasonBytes ||
		!strings.HasPrefix(s.Ack.Reason, "bad \uFFFD utf-8  nul é") {
		t.Fatalf("stored %s with reason %.40q (%d bytes)", s.Ack.Status, s.Ack.Reason, len(s.Ack.Reason))
	}
}
