package outboxui

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/outboxkit/outboxkit/framework/outbox"
)

// clean makes a stored string safe to show as text: invalid UTF-8 bytes,
// control characters (terminal escapes such as ESC), and bidirectional
// overrides become visible escapes (\x1b, \xff, \u202e). Newlines and tabs
// stay when keepLines is set. HTML escaping is html/template's job; this
// keeps what the operator sees honest.
func clean(s string, keepLines bool) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case keepLines && (r == '\n' || r == '\t'):
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r >= 0x80 && r <= 0x9f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069,
			r == 0x200e, r == 0x200f, r == 0xfeff:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// line is clean for one-line values.
func line(s string) string { return clean(s, false) }

// shorten cuts s (already cleaned) to n runes, with an ellipsis.
func shorten(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}

// payloadView is a payload ready to show.
type payloadView struct {
	Text      string
	JSON      bool
	Size      int
	Truncated bool
}

// showPayload pretty-prints a JSON payload and cuts any payload to max bytes.
func showPayload(p []byte, max int) payloadView {
	v := payloadView{Size: len(p)}
	if len(p) > max {
		v.Truncated = true
		p = p[:max]
	} else if json.Valid(p) {
		var buf bytes.Buffer
		if err := json.Indent(&buf, p, "", "  "); err == nil {
			v.JSON = true
			p = buf.Bytes()
		}
	}
	v.Text = clean(string(p), true)
	return v
}

var traceparentRe = regexp.MustCompile(`^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$`)

// traceID returns the W3C trace id of the event's traceparent header, or "".
func traceID(h map[string]string) string {
	if m := traceparentRe.FindStringSubmatch(strings.TrimSpace(h["traceparent"])); m != nil {
		return m[1]
	}
	return ""
}

// errorHash names a dead group in URLs without carrying its (long,
// hostile) text.
func errorHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:12])
}

const timeLayout = "2006-01-02 15:04:05Z07:00"

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(timeLayout)
}

// fmtAge prints a duration for humans: 3s, 4m12s, 2h05m, 3d4h.
func fmtAge(d time.Duration) string {
	switch {
	case d <= 0:
		return "—"
	case d < time.Minute:
		return fmt.Sprintf("%.0fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}

// eventRow is one line of the event list.
type eventRow struct {
	ID, Status, Ack, Topic, Type, Key, LastError, Created string
	Seq                                                   int64
	Attempts                                              int
}

func toRow(e *outbox.StoredEvent) eventRow {
	return eventRow{
		ID: line(e.ID), Status: string(e.Status), Topic: shorten(line(e.Topic), 60), Type: shorten(line(e.Type), 60),
		Key: shorten(line(e.Key), 40), LastError: shorten(line(e.LastError), 120), Created: fmtTime(e.CreatedAt),
		Seq: e.Seq, Attempts: e.Attempts, Ack: ackOf(e),
	}
}

// ackOf is the event's acknowledgment state, "" when it awaits none.
func ackOf(e *outbox.StoredEvent) string {
	if e.Ack == nil {
		return ""
	}
	return string(e.Ack.Status)
}

// header is one event header, cleaned.
type header struct{ Name, Value string }

// eventDetail is the detail page's model.
type eventDetail struct {
	ID, Status, Topic, Type, Key, LastError, TraceID, LockedBy string
	Ack, AckReason                                             string
	Created, NextAttempt, Delivered, LockedUntil               string
	Seq                                                        int64
	Attempts                                                   int
	Headers                                                    []header
	Payload                                                    payloadView
}

func toDetail(e *outbox.StoredEvent, maxPayload int) eventDetail {
	d := eventDetail{
		ID: line(e.ID), Status: string(e.Status), Topic: line(e.Topic), Type: line(e.Type), Key: line(e.Key),
		LastError: clean(e.LastError, true), TraceID: traceID(e.Headers), LockedBy: line(e.LockedBy),
		Created: fmtTime(e.CreatedAt), NextAttempt: fmtTime(e.NextAttemptAt),
		Seq: e.Seq, Attempts: e.Attempts, Payload: showPayload(e.Payload, maxPayload),
		Ack: ackOf(e),
	}
	if e.Ack != nil {
		d.AckReason = shorten(line(e.Ack.Reason), 500)
	}
	if e.DeliveredAt != nil {
		d.Delivered = fmtTime(*e.DeliveredAt)
	}
	if e.LockedUntil != nil {
		d.LockedUntil = fmtTime(*e.LockedUntil)
	}
	for k, v := range e.Headers {
		d.Headers = append(d.Headers, header{Name: line(k), Value: shorten(line(v), 2000)})
	}
	sort.Slice(d.Headers, func(i, j int) bool { return d.Headers[i].Name < d.Headers[j].Name })
	return d
}
