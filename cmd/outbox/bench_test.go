package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/outboxkit/outboxkit/cmd/outbox/internal/bench"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

// TestBench runs the real `outbox bench` on PostgreSQL and NATS with a tiny
// backlog and checks the report parses, every figure is positive, and the
// run removed its tables and stream. It asserts nothing about speed.
func TestBench(t *testing.T) {
	t.Parallel()
	outboxtest.RequireService(t, outboxtest.Postgres, outboxtest.NATS)

	res := runCLI(t, nil, "bench", "--db-url", outboxtest.PostgresURL(), "--broker-url", outboxtest.NATSURL(),
		"--events", "200", "--duration", "1s", "--idle", "200ms", "--json", "--quiet")
	if res.code != 0 {
		t.Fatalf("outbox bench exited %d: %s", res.code, res.stderr)
	}
	var rep bench.Report
	if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, res.stdout)
	}
	if len(rep.Cells) != 1 {
		t.Fatalf("want 1 cell, got %d", len(rep.Cells))
	}
	c := rep.Cells[0]
	if c.Database != "postgres" || c.Broker != "nats" {
		t.Errorf("cell is %s × %s, want postgres × nats", c.Database, c.Broker)
	}
	positive := map[string]float64{
		"drain events/s":               c.Drain.EventsPerSec,
		"drain seconds":                c.Drain.Seconds,
		"drain relay peak RSS":         c.Drain.RelayPeakRSSMB,
		"latency p50":                  c.Latency.P50Ms,
		"latency p90":                  c.Latency.P90Ms,
		"latency p99":                  c.Latency.P99Ms,
		"latency achieved rate":        c.Latency.AchievedRate,
		"watermill forwarder events/s": c.Baselines.WatermillForwarder.EventsPerSec,
		"raw broker events/s":          c.Baselines.RawBroker.EventsPerSec,
		"ratio vs forwarder":           c.Ratios.VsWatermillForwarder,
		"ratio vs raw broker":          c.Ratios.VsRawBroker,
	}
	for name, v := range positive {
		if !(v > 0) {
			t.Errorf("%s = %v, want > 0", name, v)
		}
	}
	if c.Drain.Events != 200 || c.Baselines.WatermillForwarder.Events != 200 || c.Baselines.RawBroker.Events != 200 {
		t.Errorf("backlogs %d/%d/%d, want 200 each", c.Drain.Events, c.Baselines.WatermillForwarder.Events, c.Baselines.RawBroker.Events)
	}
	if c.Latency.Committed == 0 || c.Latency.Received != c.Latency.Committed {
		t.Errorf("trickle: %d committed, %d received by the consumer", c.Latency.Committed, c.Latency.Received)
	}
	if c.Drain.RelayCPUPercent < 0 || c.Latency.RelayCPUPercent < 0 {
		t.Errorf("negative relay CPU: drain %v, trickle %v", c.Drain.RelayCPUPercent, c.Latency.RelayCPUPercent)
	}

	t.Run("cleaned up", func(t *testing.T) {
		db, err := sql.Open("postgres", outboxtest.PostgresURL())
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM pg_tables WHERE tablename LIKE $1`, "%outboxbench_"+c.ID+"%").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%d tables of bench run %s left behind", n, c.ID)
		}
		nc, err := nats.Connect(outboxtest.NATSURL())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, err := nc.JetStream()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := js.StreamInfo("OUTBOXBENCH_"+c.ID, nats.Context(ctx)); !errors.Is(err, nats.ErrStreamNotFound) {
			t.Errorf("stream OUTBOXBENCH_%s: want it deleted, StreamInfo says %v", c.ID, err)
		}
	})
}

// TestBenchUsage checks that bad bench flags are usage errors (exit 2).
func TestBenchUsage(t *testing.T) {
	t.Parallel()
	for name, args := range map[string][]string{
		"no events":         {"bench", "--events", "0"},
		"matrix and db-url": {"bench", "--matrix", "--db-url", "postgres://127.0.0.1/x"},
		"too many relays":   {"bench", "--relays", "100"},
		"bad rate":          {"bench", "--rate", "0"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if res := runCLI(t, nil, args...); res.code != exitUsage {
				t.Errorf("exit %d, want %d: %s", res.code, exitUsage, res.stderr)
			}
		})
	}
}
