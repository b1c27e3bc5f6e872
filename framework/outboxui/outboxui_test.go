package outboxui

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// fakeSource counts the queries the console makes (pure-logic tests only;
// the console's real tests run on PostgreSQL in cmd/outbox).
type fakeSource struct {
	stats, activity atomic.Int64
}

func (f *fakeSource) Stats(context.Context) (*outbox.Stats, error) {
	n := f.stats.Add(1)
	return &outbox.Stats{Pending: n, Dead: 2, OldestPendingAge: 90 * time.Second}, nil
}
func (f *fakeSource) List(context.Context, outbox.ListFilter) (*outbox.ListPage, error) {
	return &outbox.ListPage{}, nil
}
func (f *fakeSource) Get(context.Context, string) (*outbox.StoredEvent, error) {
	return nil, outbox.ErrNotFound
}
func (f *fakeSource) Retry(context.Context, ...string) (int64, error) { return 0, nil }
func (f *fakeSource) RetryDeadMatching(context.Context, outbox.ListFilter) (int64, error) {
	return 0, nil
}
func (f *fakeSource) Purge(context.Context, time.Duration, outbox.PurgeOptions) (int64, error) {
	return 0, nil
}
func (f *fakeSource) Activity(context.Context, time.Time, int) ([]outboxdriver.ActivityRow, error) {
	f.activity.Add(1)
	return nil, nil
}
func (f *fakeSource) DeadGroups(context.Context, int) (*outbox.DeadGroups, error) {
	return &outbox.DeadGroups{}, nil
}

// TestUIPollerSharedByClients opens several live streams and checks that
// each tick costs one stats query, whatever the number of browsers, and
// that every browser receives every snapshot.
func TestUIPollerSharedByClients(t *testing.T) {
	t.Parallel()
	src := &fakeSource{}
	tick := make(chan time.Time)
	h, err := newHandler(src, "fake", Config{RefreshInterval: time.Hour, ActivityInterval: time.Hour}, tick)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { h.Close() })

	const clients, ticks = 7, 3
	var mu sync.Mutex
	seen := make([][]int64, clients)
	streams := make([]*bufio.Scanner, clients)
	for i := range clients {
		resp, err := http.Get(srv.URL + "/live")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Fatalf("content type %q", ct)
		}
		streams[i] = bufio.NewScanner(resp.Body)
		streams[i].Buffer(make([]byte, 1<<20), 1<<20)
	}
	next := func(i int) int64 {
		for streams[i].Scan() {
			line, ok := strings.CutPrefix(streams[i].Text(), "data: ")
			if !ok {
				continue
			}
			var m liveMsg
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Errorf("client %d: %v", i, err)
				return -1
			}
			if !strings.Contains(m.Charts, "<svg") {
				t.Errorf("client %d: message without charts", i)
			}
			mu.Lock()
			seen[i] = append(seen[i], m.Seq)
			mu.Unlock()
			return m.Seq
		}
		t.Errorf("client %d: stream ended: %v", i, streams[i].Err())
		return -1
	}
	for i := range clients {
		if s := next(i); s != 1 {
			t.Fatalf("client %d: first snapshot seq %d, want 1 (shared)", i, s)
		}
	}
	for h.poll.watchers() != clients {
		time.Sleep(time.Millisecond)
	}
	for k := 2; k <= ticks+1; k++ {
		tick <- time.Now()
		for i := range clients {
			if s := next(i); s != int64(k) {
				t.Fatalf("client %d: got snapshot %d after tick %d, want %d", i, s, k-1, k)
			}
		}
	}
	if got := src.stats.Load(); got != ticks+1 {
		t.Fatalf("%d stats queries for %d clients and %d ticks, want %d (one per interval)", got, clients, ticks, ticks+1)
	}
	if got := src.activity.Load(); got != 1 {
		t.Fatalf("%d activity queries, want 1 (ActivityInterval not elapsed)", got)
	}
}

// TestUIPollerIdle checks that ticks without any open stream query nothing.
func TestUIPollerIdle(t *testing.T) {
	t.Parallel()
	src := &fakeSource{}
	tick := make(chan time.Time)
	h, err := newHandler(src, "fake", Config{}, tick)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for range 3 {
		tick <- time.Now()
	}
	tick <- time.Now() // the loop has handled the previous ticks
	if got := src.stats.Load(); got != 0 {
		t.Fatalf("%d stats queries with no browser open, want 0", got)
	}
}

func TestUIClean(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, want string }{
		{"plain <b>text</b>", "plain <b>text</b>"}, // HTML is html/template's job
		{"\x1b[31mred\x1b[0m", `\x1b[31mred\x1b[0m`},
		{"bad \xff\xfe utf8", `bad \xff\xfe utf8`},
		{"nul\x00 del\x7f", `nul\x00 del\x7f`},
		{"bidi \u202eevil", `bidi \u202eevil`},
		{"c1 \u009b", `c1 \u009b`},
		{"two\nlines\ttab", `two\x0alines\x09tab`},
		{"héllo ✓", "héllo ✓"},
	} {
		if got := line(c.in); got != c.want {
			t.Errorf("line(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	if got := clean("a\nb\tc\rd", true); got != "a\nb\tc\\x0dd" {
		t.Errorf("clean keepLines = %q", got)
	}
}

func TestUIPayload(t *testing.T) {
	t.Parallel()
	v := showPayload([]byte(`{"a":[1,2],"b":"</pre><script>"}`), 1000)
	if !v.JSON || !strings.Contains(v.Text, "\n  \"a\": [\n") || v.Truncated {
		t.Fatalf("pretty JSON: %+v", v)
	}
	v = showPayload([]byte(strings.Repeat("x", 50)), 10)
	if !v.Truncated || v.Text != strings.Repeat("x", 10) || v.Size != 50 {
		t.Fatalf("truncated: %+v", v)
	}
	v = showPayload([]byte("not json \x1b[2J"), 1000)
	if v.JSON || v.Text != `not json \x1b[2J` {
		t.Fatalf("text payload: %+v", v)
	}
}

func TestUITraceID(t *testing.T) {
	t.Parallel()
	if got := traceID(map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("trace id %q", got)
	}
	if got := traceID(map[string]string{"traceparent": "<script>"}); got != "" {
		t.Fatalf("bad traceparent gave %q", got)
	}
}

func TestUICharts(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 10, 30, 20, 0, time.UTC)
	m := func(back int) time.Time { return now.Truncate(time.Minute).Add(-time.Duration(back) * time.Minute) }
	rows := []outboxdriver.ActivityRow{
		{Minute: m(0), Topic: "invoices", Type: "issued", Delivered: 10, LagSeconds: 20},
		{Minute: m(5), Topic: "invoices", Type: "issued", Delivered: 4, LagSeconds: 4},
		{Minute: m(5), Topic: "<b>x</b>", Type: "paid", Delivered: 1, LagSeconds: 3},
		{Minute: m(61), Topic: "old", Type: "old", Delivered: 99}, // out of the window
	}
	c := buildCharts(rows, now)
	if len(c.Rate.Series) != 2 || c.Rate.Series[0].Name != "invoices" || c.Rate.Series[0].Total != "14 in 1h" {
		t.Fatalf("rate series %+v", c.Rate.Series)
	}
	if n := strings.Count(c.Rate.Series[0].Path, "M") + strings.Count(c.Rate.Series[0].Path, "L"); n != chartMinutes {
		t.Fatalf("rate path has %d points, want %d: %s", n, chartMinutes, c.Rate.Series[0].Path)
	}
	// Lag: points only where events were delivered (two separate moves).
	lag := c.Lag.Series[0]
	if strings.Count(lag.Path, "M") != 2 || strings.Contains(lag.Path, "L") || lag.Total != "mean 1.50s" {
		t.Fatalf("lag series %+v", lag)
	}
	if c.Rate.YTicks[2].Label != "10" {
		t.Fatalf("y scale %+v", c.Rate.YTicks)
	}
	if len(buildCharts(nil, now).Rate.Series) != 0 || !buildCharts(nil, now).Rate.Empty {
		t.Fatal("empty chart not marked empty")
	}
}
