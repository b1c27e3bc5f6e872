package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/outboxkit/outboxkit/framework/outbox"
)

// TestMetricsObserverNeverPanics feeds the observer the fields a hostile
// stored row can carry: before label values were sanitized, an invalid UTF-8
// type panicked the relay (and every restart).
func TestMetricsObserverNeverPanics(t *testing.T) {
	t.Parallel()
	m := newRelayMetrics("outbox")
	for _, o := range []outbox.Outcome{
		{Topic: "t", Type: "bad\xfftype", Attempt: 1},
		{Topic: "t\xc3", Type: "x", Attempt: 2, Err: errors.New("boom"), Dead: true},
		{Topic: strings.Repeat("é", 400), Type: "\x00\x1b[31mred", Attempt: 1},
	} {
		m.observe(o)
	}
	out := exposition(m)
	if !strings.Contains(out, "outbox_published_total{topic=\"t\",type=\"bad\uFFFDtype\"} 1") || !strings.Contains(out, `..."`) {
		t.Fatalf("label values not sanitized:\n%s", out)
	}
	for _, line := range strings.Split(out, "\n") {
		if len(line) > 400 {
			t.Fatalf("label value not cut: %d bytes", len(line))
		}
	}
}

// TestMetricsCountersStartAtZero: the failure, retry and dead counters of a
// topic and type exist (at 0) from its first outcome, the claim error
// counter from the start.
func TestMetricsCountersStartAtZero(t *testing.T) {
	t.Parallel()
	m := newRelayMetrics("outbox")
	if v, ok := sample(m, "outbox_claim_errors_total"); !ok || v != 0 {
		t.Fatalf("outbox_claim_errors_total at start: %v (exported: %v), want 0", v, ok)
	}
	m.observe(outbox.Outcome{Topic: "t", Type: "x", Attempt: 1})
	for _, name := range []string{"outbox_publish_failures_total", "outbox_dead_total", "outbox_retried_total"} {
		if v, ok := sample(m, name+`{topic="t",type="x"}`); !ok || v != 0 {
			t.Errorf("%s after the first success: %v (exported: %v), want 0", name, v, ok)
		}
	}
}

// TestMetricsReflectAFailedDatabase: a failed claim counts and marks the
// relay down; failed stats remove the table gauges instead of freezing them.
func TestMetricsReflectAFailedDatabase(t *testing.T) {
	t.Parallel()
	m := newRelayMetrics("app.outbox")
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()

	m.observeClaim(outbox.ClaimOutcome{Events: 3})
	if v, _ := sample(m, "outbox_relay_up"); v != 1 {
		t.Fatal("relay_up not 1 after a successful claim")
	}
	m.updateStats(ctx, func(context.Context) (*outbox.Stats, error) {
		return &outbox.Stats{Pending: 7, Dead: 2, OldestPendingAge: time.Minute}, nil
	}, logger)
	if v, _ := sample(m, `outbox_pending_events{table="app.outbox"}`); v != 7 {
		t.Fatalf("pending{table=app.outbox} = %v", v)
	}

	down := errors.New("connection refused")
	m.observeClaim(outbox.ClaimOutcome{Err: down})
	m.updateStats(ctx, func(context.Context) (*outbox.Stats, error) { return nil, down }, logger)
	up, _ := sample(m, "outbox_relay_up")
	errs, _ := sample(m, "outbox_claim_errors_total")
	if up != 0 || errs != 1 {
		t.Fatalf("relay_up %v, claim errors %v after a failed claim, want 0 and 1", up, errs)
	}
	for _, g := range []string{"outbox_pending_events", "outbox_dead_events", "outbox_oldest_pending_age_seconds"} {
		if v, ok := sample(m, g+`{table="app.outbox"}`); ok {
			t.Errorf("%s still exported (%v) while the database fails", g, v)
		}
	}
}

// exposition is what /metrics serves.
func exposition(m *relayMetrics) string {
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// sample returns the value of the series written exactly as series (name and
// labels) in the exposition, and whether it is there.
func sample(m *relayMetrics, series string) (float64, bool) {
	for _, line := range strings.Split(exposition(m), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// TestAckMetrics: the acknowledgment gauges follow Stats.Ack and disappear
// when the stats cannot be read.
func TestAckMetrics(t *testing.T) {
	t.Parallel()
	m := newRelayMetrics("app.outbox")
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	m.updateStats(ctx, func(context.Context) (*outbox.Stats, error) {
		return &outbox.Stats{Ack: &outbox.AckStats{Awaiting: 4, Rejected: 1, Unacknowledged: 2, OldestAwaitingAge: 90 * time.Second}}, nil
	}, logger)
	for g, want := range map[string]float64{"outbox_ack_awaiting": 4, "outbox_ack_rejected": 1,
		"outbox_ack_unacknowledged": 2, "outbox_ack_oldest_awaiting_seconds": 90} {
		if v, ok := sample(m, g+`{table="app.outbox"}`); !ok || v != want {
			t.Errorf("%s = %v (exported %v), want %v", g, v, ok, want)
		}
	}
	m.updateStats(ctx, func(context.Context) (*outbox.Stats, error) { return nil, errors.New("down") }, logger)
	if v, ok := sample(m, `outbox_ack_awaiting{table="app.outbox"}`); ok {
		t.Errorf("outbox_ack_awaiting still exported (%v) while the database fails", v)
	}
}
