package conformance

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outboxkit/outboxkit/framework/outbox"
)

// hostileValues are what a foreign writer, a manual fix or a restored dump
// can leave in a stored row behind Insert's back (Insert refuses most of
// them): invalid UTF-8, NUL bytes, terminal escapes, HTML, newlines, huge
// values. A database that refuses a value (PostgreSQL takes no NUL and no
// invalid UTF-8 in text) has nothing to test for it.
var hostileValues = []struct{ name, column, value string }{
	{"type_invalid_utf8", "type", "bad\xfftype"},
	{"type_html", "type", `<script>alert("x")</script>`},
	{"type_huge", "type", strings.Repeat("t", 255)},
	{"key_nul", "key", "k\x00ey"},
	{"key_terminal_escape", "key", "\x1b[2J\x1b]0;pwned\x07"},
	{"key_invalid_utf8", "key", "\xc3\x28"},
	{"headers_invalid_utf8_escape", "headers", `{"h":"\udc00"}`},
	{"headers_nul", "headers", `{"h":"a\u0000b"}`},
	{"headers_huge", "headers", `{"h":"` + strings.Repeat("v", 200<<10) + `"}`},
	{"topic_newline", "topic", "a\nb"},
	{"topic_invalid_utf8", "topic", "t\xff"},
}

// testHostileRows stores events, overwrites one column of some of them with
// hostile values through raw SQL, and runs a relay: it must not stall (every
// other key keeps flowing, nothing stays pending), and each hostile row
// ends either delivered, on the broker with its key and type as stored, or
// dead with a reason.
func testHostileRows(t *testing.T, h Harness) {
	d := dialectOf(t, h.Database)
	e := setup(t, h)
	var hostile []*outbox.Event
	var others []*outbox.Event
	for i := range hostileValues {
		hostile = append(hostile, e.event("hostile", i))
	}
	for i := range 10 {
		others = append(others, e.event("ok", 100+i))
	}
	e.insert(t, append(append([]*outbox.Event{}, hostile...), others...)...)
	stored := map[string]string{} // id -> what was written
	for i, hv := range hostileValues {
		if err := d.SetColumn(e.db, e.table, hostile[i].ID, hv.column, hv.value); err != nil {
			t.Logf("%s: the database refuses it (%v): nothing to test", hv.name, err)
			hostile[i] = nil
			continue
		}
		stored[hostile[i].ID] = hv.name
	}
	var mu sync.Mutex
	outcomes := map[string]int{}
	e.relay(nil, e.broker.NewPublisher(t, ""), outbox.RelayConfig{
		// Enough attempts for the other events to outlive the connection
		// resets a hostile row can cause (RabbitMQ closes the connection on a
		// header it refuses): they must be delivered, not die alongside.
		MaxAttempts: 10, BackoffMin: 10 * time.Millisecond, BackoffMax: 500 * time.Millisecond, PublishTimeout: 10 * time.Second,
		Observer: func(o outbox.Outcome) {
			mu.Lock()
			outcomes[o.EventID]++
			mu.Unlock()
		},
	})
	eventually(t, "every other key delivered", hangGuard, func() bool { return e.got.hasAll(ids(others)) })
	// Each hostile row may need all 10 attempts, and an attempt is recorded
	// with its batch, which can wait for a publish up to PublishTimeout
	// (10 s): on a slow machine (-race) that alone can outlast one hangGuard.
	eventually(t, "nothing left pending", 3*hangGuard, func() bool { return e.stats(t).Pending == 0 })
	for _, ev := range hostile {
		if ev == nil {
			continue
		}
		name := stored[ev.ID]
		st, err := e.ob.Get(t.Context(), ev.ID)
		if errors.Is(err, outbox.ErrNotFound) { // a driver that deletes delivered events
			if e.got.count(ev.ID) == 0 && !strings.HasPrefix(name, "topic") {
				t.Errorf("%s: deleted (delivered) but not on the broker", name)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: Get: %v", name, err)
			continue
		}
		switch st.Status {
		case outbox.StatusDead:
			if st.LastError == "" {
				t.Errorf("%s: dead without a reason", name)
			}
			t.Logf("%s: dead: %.200q", name, st.LastError)
		case outbox.StatusDelivered:
			if st.Topic != ev.Topic { // published elsewhere: not for this test's consumer
				t.Logf("%s: delivered to topic %q", name, st.Topic)
				continue
			}
			eventually(t, name+" on the broker", hangGuard, func() bool { return e.got.count(ev.ID) > 0 })
			for _, r := range e.got.snapshot() {
				if r.UUID != ev.ID {
					continue
				}
				for field, pair := range map[string][2]string{
					"key":  {r.Metadata[outbox.MetadataKey], st.Key},
					"type": {r.Metadata[outbox.MetadataEventType], st.Type},
				} {
					got, want := pair[0], pair[1]
					// The forwarder's JSON envelope cannot carry invalid
					// UTF-8: such a row is dead as unreadable there, never
					// published altered.
					if got != "" && got != want {
						t.Errorf("%s: published with %s %q, stored %q", name, field, got, want)
					}
				}
			}
			t.Logf("%s: delivered intact", name)
		default:
			t.Errorf("%s: status %s after the relay went idle", name, st.Status)
		}
	}
}
