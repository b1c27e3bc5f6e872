package sqlite_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/outboxkit/outboxkit/framework/outbox"
)

// FuzzRelayOverHostileRow stores arbitrary bytes in every column of an
// outbox row with raw SQL (as a foreign writer or a manual fix could,
// bypassing Insert's checks) and lets a running relay meet it: the row must
// end delivered or dead (never stay pending: a stalled or crashed relay
// leaves it pending), whatever it holds. One relay serves every input; each
// input has its own key, so no input waits behind another's.
func FuzzRelayOverHostileRow(f *testing.F) {
	for _, s := range [][5]string{
		{"t", "topic", "k", `{}`, `{}`},
		{"bad\xfftype", "topic", "k", `{"h":"v"}`, "\x00\xff"},
		{"t", "to\x00pic", "k\x00", `{"h":"a\u0000b"}`, ""},
		{"<script>alert(1)</script>", "\x1b[2J", "\x1b]0;pwned\x07", `{"h":"\udc00"}`, "x"},
		{"", "", "", "", ""},
		{"t", "topic", "", `not json`, "{"},
		{"t", "topic", "k", `{"n":1}`, strings.Repeat("p", 1<<16)},
		{strings.Repeat("t", 4096), "topic", strings.Repeat("k", 4096), `{"h":"` + strings.Repeat("v", 100<<10) + `"}`, ""},
	} {
		f.Add(s[0], s[1], s[2], s[3], []byte(s[4]))
	}
	b := setup(f)
	runRelay(f, b, newRecorder(), outbox.RelayConfig{
		PollInterval: 20 * time.Millisecond, MinPollInterval: time.Millisecond,
		MaxAttempts: 2, BackoffMin: time.Millisecond, BackoffMax: 2 * time.Millisecond,
	})
	f.Fuzz(func(t *testing.T, typ, topic, key, headers string, payload []byte) {
		var r [16]byte
		_, _ = rand.Read(r[:])
		r[6], r[8] = r[6]&0x0f|0x40, r[8]&0x3f|0x80 // a version 4 UUID
		id := fmt.Sprintf("%x-%x-%x-%x-%x", r[0:4], r[4:6], r[6:8], r[8:10], r[10:16])
		// The key is made unique per input, so that inputs never wait for
		// each other; its bytes are still the fuzzer's.
		key = id + key
		if payload == nil {
			payload = []byte{}
		}
		_, err := b.db.Exec(`INSERT INTO "outbox" (id, type, topic, key, payload, headers, created_at, next_attempt_at)
			VALUES (?, ?, ?, ?, ?, ?, 0, 0)`, id, typ, topic, key, payload, headers)
		if err != nil {
			t.Skipf("SQLite refuses the row: %v", err)
		}
		deadline := time.Now().Add(30 * time.Second) // a hang guard, not a timing assertion
		for {
			st, err := b.ob.Get(context.Background(), id)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if st.Status != outbox.StatusPending {
				if st.Status == outbox.StatusDead && st.LastError == "" {
					t.Fatalf("dead without a reason: %+v", st)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("row still pending after 30 s (attempts %d, last error %q): the relay stalled or died", st.Attempts, st.LastError)
			}
			time.Sleep(2 * time.Millisecond)
		}
	})
}
