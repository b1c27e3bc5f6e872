package conformance_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outboxkit/outboxkit/conformance"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

// selfTestEnv switches a re-executed test binary into "run the suite against
// a broken relay" mode; its value names the broken variant.
const selfTestEnv = "OUTBOXKIT_CONFORMANCE_SELFTEST"

// Broken relays. Each keeps the public shape (an outboxdriver.Driver
// decorator or a message.Publisher wrapper handed to the real outbox.Relay),
// so the suite runs them exactly as it runs a correct one.
const (
	// brokenNone is the control: the real driver and publisher.
	brokenNone = "none"
	// brokenPremark marks every claimed event delivered at claim time,
	// before the broker acknowledged it: the held batch records its rows
	// delivered and commits as soon as it is claimed.
	brokenPremark = "premark"
	// brokenDrop silently drops every 5th message: Publish returns nil
	// without publishing.
	brokenDrop = "drop"
	// brokenReorder hands the relay its claimed batch in reverse order,
	// ignoring per-key (Seq) order.
	brokenReorder = "reorder"
	// brokenSwallow swallows failures: the relay's failed attempts are
	// recorded as deliveries (the held batch's Finish marks them
	// delivered). A publisher that swallows its errors is not a useful
	// variant on NATS: there a cut or stalled broker surfaces as the relay's
	// own PublishTimeout, not as a Publish error, and nats.go's reconnect
	// buffer still delivers the message afterwards.
	brokenSwallow = "swallow"
)

// selfTestCases pairs each broken variant with the contract test that must
// catch it. Variants that lose events can only be caught by waiting for
// what never arrives: those tests would fail at the suite's 90 s hang
// guard, and the child's -test.timeout cuts that short (hang: true).
var selfTestCases = []struct {
	variant, test string
	hang          bool
}{
	{brokenPremark, "C2/relay_SIGKILL_restart", false},
	{brokenReorder, "C4/per_key_order_three_relays", false},
	{brokenDrop, "C2/writers_commit_out_of_id_order", true},
	{brokenSwallow, "C5/poison_event_dead_others_flow", true},
}

// brokenHarness is the PostgreSQL × NATS cell with the named variant.
func brokenHarness(variant string) conformance.Harness {
	db, b := conformance.Postgres(), conformance.NATS()
	newDriver := db.NewDriver
	db.NewDriver = func(sqlDB *sql.DB, table string) (outboxdriver.Driver, error) {
		d, err := newDriver(sqlDB, table)
		if err != nil {
			return nil, err
		}
		// A child cut short by -test.timeout runs no cleanup: the parent
		// drops what it names here.
		fmt.Printf("selftest-created table %s\n", table)
		return &brokenDriver{Driver: d, held: d.(outboxdriver.HeldClaimer), variant: variant}, nil
	}
	open := b.Open
	b.Open = func(t testing.TB, id string) conformance.BrokerInstance {
		fmt.Printf("selftest-created stream %s\n", id)
		return brokenBroker{BrokerInstance: open(t, id), variant: variant}
	}
	return conformance.Harness{Name: "postgres_nats_" + variant, Database: db, Broker: b}
}

// brokenDriver wraps the PostgreSQL driver's held claims (its one claim
// protocol) with the named variant.
type brokenDriver struct {
	outboxdriver.Driver
	held    outboxdriver.HeldClaimer
	variant string
}

func (d *brokenDriver) EventClaimHeld(ctx context.Context, p *outboxdriver.EventClaimBatchParams) (outboxdriver.HeldBatch, error) {
	batch, err := d.held.EventClaimHeld(ctx, p)
	if err != nil || len(batch.Rows()) == 0 {
		return batch, err
	}
	switch d.variant {
	case brokenPremark:
		rows := batch.Rows()
		ids := make([]string, len(rows))
		for i, r := range rows {
			ids[i] = r.ID
		}
		if err := batch.Finish(ctx, ids, nil); err != nil {
			_ = batch.Abort()
			return nil, err
		}
		return recordedBatch{rows: rows}, nil
	case brokenReorder:
		rows := slices.Clone(batch.Rows())
		slices.Reverse(rows)
		return reorderedBatch{HeldBatch: batch, rows: rows}, nil
	case brokenSwallow:
		return swallowingBatch{batch}, nil
	}
	return batch, nil
}

// recordedBatch is a batch whose rows were already recorded delivered and
// committed at claim time: the relay's outcome is ignored.
type recordedBatch struct{ rows []*outboxdriver.EventRow }

func (b recordedBatch) Rows() []*outboxdriver.EventRow { return b.rows }
func (recordedBatch) Finish(context.Context, []string, []outboxdriver.FailedAttempt) error {
	return nil
}
func (recordedBatch) Abort() error { return nil }

// reorderedBatch hands out its rows in another order.
type reorderedBatch struct {
	outboxdriver.HeldBatch
	rows []*outboxdriver.EventRow
}

func (b reorderedBatch) Rows() []*outboxdriver.EventRow { return b.rows }

// swallowingBatch records failed attempts as deliveries.
type swallowingBatch struct{ outboxdriver.HeldBatch }

func (b swallowingBatch) Finish(ctx context.Context, delivered []string, failed []outboxdriver.FailedAttempt) error {
	all := slices.Clone(delivered)
	for _, f := range failed {
		all = append(all, f.ID)
	}
	return b.HeldBatch.Finish(ctx, all, nil)
}

type brokenBroker struct {
	conformance.BrokerInstance
	variant string
}

func (b brokenBroker) NewPublisher(t testing.TB, addr string) message.Publisher {
	return &brokenPublisher{inner: b.BrokerInstance.NewPublisher(t, addr), variant: b.variant}
}

type brokenPublisher struct {
	inner   message.Publisher
	variant string
	n       atomic.Int64
}

func (p *brokenPublisher) Publish(topic string, msgs ...*message.Message) error {
	switch p.variant {
	case brokenDrop:
		if p.n.Add(1)%5 == 0 {
			return nil
		}
	case brokenPremark:
		// Premarked events are lost only if the relay dies before it
		// published them. Slow publishes keep each batch in flight long
		// enough that the SIGKILL test (which kills as acks appear) always
		// lands inside one; with fast publishes it sometimes killed between
		// batches and the broken relay went unnoticed.
		time.Sleep(20 * time.Millisecond)
	}
	return p.inner.Publish(topic, msgs...)
}

func (p *brokenPublisher) Close() error { return p.inner.Close() }

// TestSelfTest shows that the fault tests can fail: each broken relay runs
// the contract test meant to catch it, in a child process (a failing test
// cannot be run in-process and expected to fail), and that child must FAIL
// (or, for tests that can only notice loss by waiting, still be waiting
// when its -test.timeout ends it). A control child runs the same tests
// against the correct relay and must PASS, so the failures are the broken
// relays' doing. The cell is PostgreSQL × NATS.
func TestSelfTest(t *testing.T) {
	if v := os.Getenv(selfTestEnv); v != "" {
		h := brokenHarness(v)
		t.Run(h.Name, func(t *testing.T) { conformance.Run(t, h) })
		return
	}
	t.Parallel()
	outboxtest.RequireService(t, outboxtest.Postgres, outboxtest.NATS)

	t.Run("control_correct_relay_passes", func(t *testing.T) {
		t.Parallel()
		var tests []string
		for _, c := range selfTestCases {
			tests = append(tests, c.test)
		}
		res := runBroken(t, brokenNone, tests, 3*time.Minute)
		if res.err != nil {
			t.Fatalf("the correct relay failed the tests the broken ones must fail (%v, %s):\n%s", res.err, res.took, tailLines(res.out, 60))
		}
		for _, test := range tests {
			if !strings.Contains(res.out, "--- PASS: "+res.full(test)) {
				t.Errorf("%s did not pass against the correct relay:\n%s", test, tailLines(res.out, 60))
			}
		}
		t.Logf("correct relay: %s passed in %s", strings.Join(tests, ", "), res.took.Round(time.Millisecond))
	})

	for _, c := range selfTestCases {
		t.Run(c.variant+"_fails_"+strings.ReplaceAll(c.test, "/", "_"), func(t *testing.T) {
			t.Parallel()
			timeout := 2 * time.Minute
			if c.hang {
				timeout = 30 * time.Second
			}
			res := runBroken(t, c.variant, []string{c.test}, timeout)
			full := res.full(c.test)
			switch {
			case res.err == nil:
				t.Fatalf("broken relay %q PASSED %s: the test cannot catch it\n%s", c.variant, c.test, tailLines(res.out, 40))
			case strings.Contains(res.out, "--- SKIP: "+full):
				t.Fatalf("%s was skipped, not failed:\n%s", c.test, tailLines(res.out, 40))
			case strings.Contains(res.out, "--- FAIL: "+full):
				t.Logf("broken relay %q: %s FAILED in %s: %s", c.variant, c.test, res.took.Round(time.Millisecond), failureLines(res.out))
			case c.hang && slices.Contains(timedOut(res.out), full):
				t.Logf("broken relay %q: %s still waiting after %s for what never comes (the suite's 90 s hang guard fails it): %s",
					c.variant, c.test, timeout, failureLines(res.out))
			default:
				t.Fatalf("child exited with %v but %s did not fail:\n%s", res.err, c.test, tailLines(res.out, 60))
			}
		})
	}
}

type childResult struct {
	cell string
	out  string
	err  error
	took time.Duration
}

// full is the child's name of a contract test, e.g.
// TestSelfTest/postgres_nats_drop/C2/broker_cut.
func (r childResult) full(test string) string { return "TestSelfTest/" + r.cell + "/" + test }

// runBroken runs the given contract tests ("C2/broker_cut") against variant
// in a child process with -test.short.
func runBroken(t *testing.T, variant string, tests []string, timeout time.Duration) childResult {
	t.Helper()
	cell := brokenHarness(variant).Name
	groups, names := map[string]bool{}, map[string]bool{}
	for _, tc := range tests {
		g, n, _ := strings.Cut(tc, "/")
		groups[regexp.QuoteMeta(g)], names[regexp.QuoteMeta(n)] = true, true
	}
	alt := func(m map[string]bool) string {
		var s []string
		for k := range m {
			s = append(s, k)
		}
		slices.Sort(s)
		return "^(" + strings.Join(s, "|") + ")$"
	}
	pattern := fmt.Sprintf("^TestSelfTest$/^%s$/%s/%s", regexp.QuoteMeta(cell), alt(groups), alt(names))
	ctx, cancel := context.WithTimeout(context.Background(), timeout+time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run="+pattern, "-test.count=1", "-test.short", "-test.v",
		"-test.timeout="+timeout.String())
	cmd.Env = append(os.Environ(), selfTestEnv+"="+variant)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	res := childResult{cell: cell, out: out.String(), err: err, took: time.Since(start)}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("child %s: %v", cell, err)
	}
	cleanupChild(t, res.out)
	return res
}

var createdRe = regexp.MustCompile(`selftest-created (table|stream) (\w+)`)

// cleanupChild drops the tables and NATS streams a child announced (a
// timed-out child leaves them behind).
func cleanupChild(t *testing.T, out string) {
	db := conformance.Postgres()
	sqlDB, err := sql.Open(db.DriverName, db.DSN)
	if err != nil {
		t.Logf("cleanup: %v", err)
		return
	}
	defer sqlDB.Close()
	nc, err := nats.Connect(outboxtest.NATSURL())
	if err != nil {
		t.Logf("cleanup: %v", err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Logf("cleanup: %v", err)
		return
	}
	seen := map[string]bool{}
	for _, m := range createdRe.FindAllStringSubmatch(out, -1) {
		kind, name := m[1], m[2]
		if seen[kind+name] {
			continue
		}
		seen[kind+name] = true
		switch kind {
		case "table":
			if name == "valid_outbox_name" {
				continue
			}
			err = db.DropTable(sqlDB, name)
		case "stream":
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err = js.DeleteStream(ctx, name)
			cancel()
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				err = nil
			}
		}
		if err != nil {
			t.Logf("cleanup %s %s: %v", kind, name, err)
		}
	}
}

var assertionLine = regexp.MustCompile(`^\s+\w+\.go:\d+: (.*)$`)

// failureLines picks the child's error messages (the last few file:line
// lines) for the log.
func failureLines(out string) string {
	var picked []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "panic: test timed out") {
			picked = append(picked, l+"; still running: "+strings.Join(timedOut(out), ", "))
		}
		if m := assertionLine.FindStringSubmatch(l); m != nil &&
			(strings.Contains(m[1], "C2:") || strings.Contains(m[1], "C3:") || strings.Contains(m[1], "order") ||
				strings.Contains(m[1], "timed out") || strings.Contains(m[1], "never")) {
			picked = append(picked, strings.TrimSpace(l))
		}
	}
	if len(picked) == 0 {
		return "(no assertion message)"
	}
	return strings.Join(picked[max(0, len(picked)-3):], " | ")
}

// timedOut returns the tests a "panic: test timed out" message lists as
// running (without their durations).
func timedOut(out string) []string {
	_, after, ok := strings.Cut(out, "panic: test timed out")
	if !ok {
		return nil
	}
	_, list, ok := strings.Cut(after, "running tests:\n")
	if !ok {
		return nil
	}
	var names []string
	for _, l := range strings.Split(list, "\n") {
		if !strings.HasPrefix(l, "\t") {
			break
		}
		name, _, _ := strings.Cut(strings.TrimSpace(l), " (")
		names = append(names, name)
	}
	return names
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// TestSQLiteCellBusyTimeout pins the SQLite cells' writer busy timeout: a
// DSN tweak that silently kept sqlite.DSN's 5 s (two busy_timeout pragmas
// run in no fixed order) made writers fail under -race.
func TestSQLiteCellBusyTimeout(t *testing.T) {
	t.Parallel()
	dsn := conformance.SQLite("/tmp/x.db").DSN
	if strings.Count(dsn, "busy_timeout") != 1 || !strings.Contains(dsn, "busy_timeout(60000)") {
		t.Fatalf("DSN %s", dsn)
	}
}
