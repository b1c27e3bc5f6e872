package outboxack

import (
	"errors"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outboxkit/framework/outbox"
)

func TestReplyRoundTrip(t *testing.T) {
	t.Parallel()
	id := watermill.NewUUID()
	for _, want := range []outbox.AckOutcome{outbox.AckSuccess, outbox.AckRejection("no such patient")} {
		gotID, got, err := ParseReply(NewReply(id, want))
		if err != nil || gotID != id || got != want {
			t.Fatalf("ParseReply(NewReply(%s, %+v)) = %s, %+v, %v", id, want, gotID, got, err)
		}
	}
}

func TestParseReplyHostile(t *testing.T) {
	t.Parallel()
	msg := func(id, status, payload string) *message.Message {
		m := message.NewMessage("r", []byte(payload))
		m.Metadata.Set(MetadataEventID, id)
		m.Metadata.Set(MetadataStatus, status)
		return m
	}
	for name, m := range map[string]*message.Message{
		"nil":            nil,
		"no id":          msg("", "SUCCESS", ""),
		"blank id":       msg("   ", "SUCCESS", ""),
		"huge id":        msg(strings.Repeat("9", 1<<20), "SUCCESS", ""),
		"no status":      msg("x", "", ""),
		"unknown status": msg("x", "OK\xff", ""),
	} {
		if _, _, err := ParseReply(m); !errors.Is(err, ErrInvalidReply) {
			t.Fatalf("%s: %v, want ErrInvalidReply", name, err)
		}
	}
	_, o, err := ParseReply(msg("x", " rejected ", "bad \xff\x00"+strings.Repeat("z", 2*outbox.MaxAckReasonBytes)))
	if err != nil || !o.Rejected || len(o.Reason) > outbox.MaxAckReasonBytes || strings.ContainsRune(o.Reason, 0) {
		t.Fatalf("hostile payload: %+v (%d bytes), %v", o.Rejected, len(o.Reason), err)
	}
}

func TestHandlerNeedsOutbox(t *testing.T) {
	t.Parallel()
	if _, err := Handler(Config{}); !errors.Is(err, outbox.ErrInvalidConfig) || !strings.Contains(err.Error(), "Outbox") {
		t.Fatalf("Handler(Config{}) error %v, want ErrInvalidConfig naming Outbox", err)
	}
}
