package outbox

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestAckPolicyValidation(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		p     AckPolicy
		field string
	}{
		"zero deadline":          {AckPolicy{}, "AwaitAck.Deadline"},
		"sub-ms deadline":        {AckPolicy{Deadline: time.Microsecond}, "AwaitAck.Deadline"},
		"huge deadline":          {AckPolicy{Deadline: MaxAckDeadline + time.Second}, "AwaitAck.Deadline"},
		"negative resends":       {AckPolicy{Deadline: time.Second, MaxResends: -1}, "AwaitAck.MaxResends"},
		"too many resends":       {AckPolicy{Deadline: time.Second, MaxResends: MaxAckResends + 1}, "AwaitAck.MaxResends"},
		"negative backoff":       {AckPolicy{Deadline: time.Second, ResendBackoff: -time.Second}, "AwaitAck.ResendBackoff"},
		"sub-ms backoff":         {AckPolicy{Deadline: time.Second, ResendBackoff: time.Nanosecond}, "AwaitAck.ResendBackoff"},
		"huge backoff":           {AckPolicy{Deadline: time.Second, ResendBackoff: MaxAckDeadline + 1}, "AwaitAck.ResendBackoff"},
		"valid, no resend":       {AckPolicy{Deadline: time.Millisecond}, ""},
		"valid, with resends":    {AckPolicy{Deadline: time.Hour, MaxResends: 3, ResendBackoff: time.Minute}, ""},
		"valid, maximal resends": {AckPolicy{Deadline: MaxAckDeadline, MaxResends: MaxAckResends}, ""},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			field, reason := c.p.validate()
			if field != c.field {
				t.Fatalf("validate() = %q (%s), want field %q", field, reason, c.field)
			}
			if field != "" && reason == "" {
				t.Fatal("an invalid policy needs a reason")
			}
		})
	}
	if got := insertAck(&AckPolicy{Deadline: time.Minute}); got.ResendBackoff != time.Minute {
		t.Fatalf("zero ResendBackoff stored as %s, want the deadline", got.ResendBackoff)
	}
}

func TestSanitizeAckReason(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "ok", "bad \xff", "nul\x00nul", strings.Repeat("é", MaxAckReasonBytes), strings.Repeat("x", 3*MaxAckReasonBytes) + "\xff"} {
		out := SanitizeAckReason(in)
		if reason := checkText(out, MaxAckReasonBytes); reason != "" {
			t.Fatalf("SanitizeAckReason(%.20q) = %.20q, still not storable: %s", in, out, reason)
		}
		if !utf8.ValidString(out) {
			t.Fatalf("invalid UTF-8 out of %.20q", in)
		}
	}
	if got := SanitizeAckReason("déjà vu"); got != "déjà vu" {
		t.Fatalf("a valid reason changed: %q", got)
	}
}
