package conformance

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// C8 — business acknowledgments: an event inserted with AwaitAck is done
// when its receiver answers SUCCESS, not when the broker stored it. A
// rejection is kept with its reason; silence past the deadline resends the
// event (same id) up to MaxResends times, then makes it unacknowledged; a
// second answer is a no-op, a late SUCCESS is accepted; a relay SIGKILLed
// between a resend and the answer loses nothing and acknowledges nothing
// twice.
func c8Tests(cellTest string) []namedTest {
	return []namedTest{
		{"Acknowledged", testAckAcknowledged},
		{"Rejected", testAckRejected},
		{"SilenceResendAcknowledged", testAckResendThenAcknowledged},
		{"SilenceUnacknowledged", testAckUnacknowledged},
		{"DuplicateAndLateAnswers", testAckDuplicateAnswers},
		{"SIGKILLBetweenResendAndAnswer", func(t *testing.T, h Harness) { testAckSIGKILL(t, h, cellTest) }},
	}
}

// ackSweep is the sweep interval of the C8 relays.
const ackSweep = 50 * time.Millisecond

// ackEnv is a C8 test's world: the env, a relay whose acknowledged
// publishes are logged, and the driver's Acknowledger.
type ackEnv struct {
	*env
	ack  outboxdriver.Acknowledger
	pubs *ackLog
}

func setupAck(t *testing.T, h Harness, relay bool) *ackEnv {
	t.Helper()
	e := setup(t, h)
	ack, ok := e.drv.(outboxdriver.Acknowledger)
	if !ok {
		skipf(t, "%s driver %T does not implement outboxdriver.Acknowledger", h.Database.Name, e.drv)
	}
	a := &ackEnv{env: e, ack: ack, pubs: &ackLog{}}
	if relay {
		pub := &tap{inner: e.broker.NewPublisher(t, ""), log: a.pubs}
		e.relay(nil, pub, outbox.RelayConfig{ID: "c8-" + e.id, AckSweepInterval: ackSweep})
	}
	return a
}

// awaiting returns n events that await an acknowledgment with policy p.
func (a *ackEnv) awaiting(n int, p outbox.AckPolicy) []*outbox.Event {
	out := make([]*outbox.Event, n)
	for i := range out {
		out[i] = a.event(fmt.Sprintf("ack%d", i), i)
		pol := p
		out[i].AwaitAck = &pol
	}
	return out
}

// state reads id's ack row straight from the driver (it outlives the event
// row with DeleteDelivered).
func (a *ackEnv) state(t testing.TB, id string) *outboxdriver.AckRow {
	t.Helper()
	rows, err := a.ack.AckGet(context.Background(), &outboxdriver.AckGetParams{IDs: []string{id}})
	if err != nil {
		t.Fatalf("ack state of %s: %v", id, err)
	}
	if rows[id] == nil {
		t.Fatalf("event %s has no ack row", id)
	}
	return rows[id]
}

// answer records outcome for id in its own committed transaction.
func (a *ackEnv) answer(id string, outcome outbox.AckOutcome) error {
	tx, err := a.db.Begin()
	if err != nil {
		return err
	}
	if err := a.ob.Acknowledge(context.Background(), tx, id, outcome); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// published counts the broker-acknowledged publishes of id.
func (a *ackEnv) published(id string) int {
	n := 0
	for _, p := range a.pubs.snapshot() {
		if p.id == id {
			n++
		}
	}
	return n
}

func (a *ackEnv) ackStats(t testing.TB) *outbox.AckStats {
	t.Helper()
	s := a.stats(t)
	if s.Ack == nil {
		t.Fatal("Stats.Ack is nil on a driver that implements outboxdriver.Acknowledger")
	}
	return s.Ack
}

func (a *ackEnv) listAck(t testing.TB, st outbox.AckStatus) []string {
	t.Helper()
	page, err := a.ob.List(context.Background(), outbox.ListFilter{Ack: st, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ev := range page.Events {
		if ev.Ack == nil || ev.Ack.Status != st {
			t.Fatalf("List(Ack: %s) returned %s whose ack is %+v", st, ev.ID, ev.Ack)
		}
		out = append(out, ev.ID)
	}
	return out
}

func testAckAcknowledged(t *testing.T, h Harness) {
	a := setupAck(t, h, true)
	events := a.awaiting(5, outbox.AckPolicy{Deadline: 10 * time.Minute, MaxResends: 3})
	plain := a.event("plain", 0)
	a.insert(t, append(events, plain)...)
	all := append(ids(events), plain.ID)
	a.waitAllDelivered(t, all, hangGuard)

	for _, ev := range events {
		if st := a.state(t, ev.ID); st.Status != outbox.AckAwaiting || st.AnsweredAt != nil {
			t.Fatalf("event %s delivered but not answered: ack %s (answered %v), want awaiting", ev.ID, st.Status, st.AnsweredAt)
		}
	}
	if s := a.ackStats(t); s.Awaiting != 5 || s.OldestAwaitingAge <= 0 {
		t.Fatalf("stats: %d awaiting (oldest %s), want 5 and a positive age", s.Awaiting, s.OldestAwaitingAge)
	}
	if !h.Database.DeletesDelivered {
		if got := a.listAck(t, outbox.AckAwaiting); strings.Join(got, ",") != strings.Join(ids(events), ",") {
			t.Fatalf("List(Ack: awaiting) = %v, want %v", got, ids(events))
		}
		if s := a.get(t, plain.ID); s.Ack != nil {
			t.Fatalf("event without AwaitAck has ack state %+v", s.Ack)
		}
	}

	// An answer in a rolled-back transaction records nothing.
	tx, err := a.db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.ob.Acknowledge(context.Background(), tx, events[0].ID, outbox.AckSuccess); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if st := a.state(t, events[0].ID); st.Status != outbox.AckAwaiting {
		t.Fatalf("answer rolled back, ack is %s, want awaiting", st.Status)
	}

	for _, ev := range events {
		if err := a.answer(ev.ID, outbox.AckSuccess); err != nil {
			t.Fatalf("acknowledge %s: %v", ev.ID, err)
		}
	}
	for _, ev := range events {
		st := a.state(t, ev.ID)
		if st.Status != outbox.AckAcknowledged || st.AnsweredAt == nil || st.Resends != 0 {
			t.Fatalf("event %s: ack %s answered %v resends %d, want acknowledged, answered, 0 resends", ev.ID, st.Status, st.AnsweredAt, st.Resends)
		}
		if n := a.published(ev.ID); n != 1 {
			t.Fatalf("event %s published %d times, want 1 (answered well before its deadline)", ev.ID, n)
		}
	}
	if s := a.ackStats(t); s.Awaiting != 0 || s.Rejected != 0 || s.Unacknowledged != 0 || s.OldestAwaitingAge != 0 {
		t.Fatalf("stats after the answers: %+v, want all zero", s)
	}
	if err := a.answer(plain.ID, outbox.AckSuccess); !errors.Is(err, outbox.ErrAckNotFound) {
		t.Fatalf("acknowledge an event inserted without AwaitAck: %v, want ErrAckNotFound", err)
	}
}

func testAckRejected(t *testing.T, h Harness) {
	a := setupAck(t, h, true)
	deadline := time.Second
	events := a.awaiting(2, outbox.AckPolicy{Deadline: deadline, MaxResends: 3})
	a.insert(t, events...)
	a.waitAllDelivered(t, ids(events), hangGuard)
	reason := "assuré inconnu: numéro de sécurité sociale invalide"
	if err := a.answer(events[0].ID, outbox.AckRejection(reason)); err != nil {
		t.Fatal(err)
	}
	if err := a.answer(events[1].ID, outbox.AckSuccess); err != nil {
		t.Fatal(err)
	}
	st := a.state(t, events[0].ID)
	if st.Status != outbox.AckRejected || st.Reason != reason || st.AnsweredAt == nil {
		t.Fatalf("ack %s reason %q, want rejected with %q", st.Status, st.Reason, reason)
	}
	// A rejection is final: past its deadline (and several sweeps) the
	// event is not resent.
	time.Sleep(3 * deadline)
	for _, ev := range events {
		if n := a.published(ev.ID); n != 1 {
			t.Fatalf("answered event %s published %d times, want 1", ev.ID, n)
		}
	}
	if st := a.state(t, events[0].ID); st.Status != outbox.AckRejected || st.Resends != 0 {
		t.Fatalf("rejected ack became %s with %d resends", st.Status, st.Resends)
	}
	if s := a.ackStats(t); s.Rejected != 1 || s.Awaiting != 0 {
		t.Fatalf("stats: %d rejected, %d awaiting, want 1 and 0", s.Rejected, s.Awaiting)
	}
	if !h.Database.DeletesDelivered {
		if got := a.listAck(t, outbox.AckRejected); len(got) != 1 || got[0] != events[0].ID {
			t.Fatalf("List(Ack: rejected) = %v, want [%s]", got, events[0].ID)
		}
		if s := a.get(t, events[0].ID); s.Ack == nil || s.Ack.Reason != reason {
			t.Fatalf("Get: ack %+v, want the rejection's reason", s.Ack)
		}
	}
}

func testAckResendThenAcknowledged(t *testing.T, h Harness) {
	a := setupAck(t, h, true)
	backoff := 300 * time.Millisecond
	events := a.awaiting(3, outbox.AckPolicy{Deadline: backoff, MaxResends: 100, ResendBackoff: backoff})
	a.insert(t, events...)
	for _, ev := range events {
		eventually(t, "a resend of "+ev.ID, hangGuard, func() bool { return a.published(ev.ID) >= 2 })
	}
	for _, ev := range events {
		if st := a.state(t, ev.ID); st.Status != outbox.AckAwaiting || st.Resends < 1 {
			t.Fatalf("resent event %s: ack %s with %d resends, want awaiting with at least 1", ev.ID, st.Status, st.Resends)
		}
		// A late SUCCESS, after one resend or more, is accepted.
		if err := a.answer(ev.ID, outbox.AckSuccess); err != nil {
			t.Fatalf("late acknowledge of %s: %v", ev.ID, err)
		}
	}
	counts := map[string]int{}
	for _, ev := range events {
		counts[ev.ID] = a.published(ev.ID)
		if st := a.state(t, ev.ID); st.Status != outbox.AckAcknowledged {
			t.Fatalf("late SUCCESS of %s: ack %s, want acknowledged", ev.ID, st.Status)
		}
	}
	// Once answered, resends stop: at most the one a sweep had decided at
	// the moment of the answer.
	time.Sleep(6 * backoff)
	for _, ev := range events {
		if n := a.published(ev.ID); n > counts[ev.ID]+1 {
			t.Fatalf("event %s published %d times after its answer (%d before): resends went on", ev.ID, n, counts[ev.ID])
		}
	}
	// The consumer sees the resend with the same id, counted in
	// outbox_resend, also on a broker that drops a repeated message id
	// (its dedup id then names the resend).
	for _, ev := range events {
		eventually(t, "the resend of "+ev.ID+" on the broker", hangGuard, func() bool { return a.got.count(ev.ID) >= 2 })
	}
	a.checkResends(t, ids(events))
}

// checkResends checks every message the consumer got of the events ids:
// the first carries no outbox_resend, the others count 1, 2, ... in the
// order the broker delivered them (each at most twice: a relay may publish
// a resend again; checked on brokers that keep per-key order), and a broker's dedup id is the event id, plus
// "/resend-N" on a broker that drops a repeated id.
func (a *ackEnv) checkResends(t *testing.T, ids []string) {
	t.Helper()
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	last := map[string]int{}
	for _, r := range a.got.snapshot() {
		if !want[r.UUID] {
			continue
		}
		n := 0
		if s := r.Metadata[outbox.MetadataResend]; s != "" {
			if _, err := fmt.Sscan(s, &n); err != nil || n < 1 || fmt.Sprint(n) != s {
				t.Fatalf("event %s received with outbox_resend %q", r.UUID, s)
			}
		}
		if prev, seen := last[r.UUID]; a.h.Broker.Features.PerKeyOrder && ((!seen && n != 0) || (seen && n != prev && n != prev+1)) {
			t.Fatalf("event %s received with outbox_resend %d after %d (seen before: %v)", r.UUID, n, prev, seen)
		}
		last[r.UUID] = n
		dedup := r.UUID
		if a.h.Broker.Features.NativeDedup && n > 0 {
			dedup = fmt.Sprintf("%s/resend-%d", r.UUID, n)
		}
		if (a.h.Broker.Features.NativeDedup || a.h.Broker.Features.DedupSlot != "") && r.DedupID != dedup {
			t.Fatalf("event %s resend %d: the broker's dedup slot holds %q, want %q", r.UUID, n, r.DedupID, dedup)
		}
	}
}

func testAckUnacknowledged(t *testing.T, h Harness) {
	a := setupAck(t, h, true)
	const maxResends = 2
	p := outbox.AckPolicy{Deadline: 200 * time.Millisecond, MaxResends: maxResends, ResendBackoff: 250 * time.Millisecond}
	events := a.awaiting(2, p)
	a.insert(t, events...)
	for _, ev := range events {
		eventually(t, ev.ID+" unacknowledged", hangGuard, func() bool { return a.state(t, ev.ID).Status == outbox.AckUnacknowledged })
	}
	for _, ev := range events {
		st := a.state(t, ev.ID)
		if st.Resends != maxResends {
			t.Fatalf("unacknowledged %s after %d resends, want %d", ev.ID, st.Resends, maxResends)
		}
		if n := a.published(ev.ID); n != 1+maxResends {
			t.Fatalf("unacknowledged %s published %d times, want %d (once, then %d resends)", ev.ID, n, 1+maxResends, maxResends)
		}
	}
	if s := a.ackStats(t); s.Unacknowledged != 2 || s.Awaiting != 0 {
		t.Fatalf("stats: %d unacknowledged, %d awaiting, want 2 and 0", s.Unacknowledged, s.Awaiting)
	}
	if got := a.listAck(t, outbox.AckUnacknowledged); len(got) != 2 {
		t.Fatalf("List(Ack: unacknowledged) = %v, want both events", got)
	}
	// Unacknowledged is not final: no more resends, but a late SUCCESS is
	// still recorded...
	time.Sleep(4 * p.ResendBackoff)
	if n := a.published(events[0].ID); n != 1+maxResends {
		t.Fatalf("unacknowledged %s resent again: %d publishes", events[0].ID, n)
	}
	if err := a.answer(events[0].ID, outbox.AckSuccess); err != nil {
		t.Fatal(err)
	}
	if st := a.state(t, events[0].ID); st.Status != outbox.AckAcknowledged {
		t.Fatalf("late SUCCESS after unacknowledged: %s, want acknowledged", st.Status)
	}
	// ... and an operator's retry resends the event and awaits again.
	n, err := a.ob.RetryUnacknowledged(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("RetryUnacknowledged = %d, %v; want 1 (the one still unacknowledged)", n, err)
	}
	if st := a.state(t, events[1].ID); st.Status != outbox.AckAwaiting || st.Resends != 0 {
		t.Fatalf("after retry: %s with %d resends, want awaiting with 0", st.Status, st.Resends)
	}
	eventually(t, "the retried event published again", hangGuard, func() bool { return a.published(events[1].ID) > 1+maxResends })
	// The receiver gets it: on a broker that drops a repeated message id
	// too, the operator's resend of an event awaiting an answer counts as
	// a resend.
	eventually(t, "the retried event on the broker", hangGuard, func() bool { return a.got.count(events[1].ID) > 1+maxResends })
	a.checkResends(t, ids(events))
	if err := a.answer(events[1].ID, outbox.AckSuccess); err != nil {
		t.Fatal(err)
	}
	if s := a.ackStats(t); s.Unacknowledged != 0 || s.Awaiting != 0 {
		t.Fatalf("stats at the end: %+v, want nothing unacknowledged or awaiting", s)
	}
}

func testAckDuplicateAnswers(t *testing.T, h Harness) {
	a := setupAck(t, h, true)
	events := a.awaiting(2, outbox.AckPolicy{Deadline: 10 * time.Minute})
	a.insert(t, events...)
	a.waitAllDelivered(t, ids(events), hangGuard)

	first := events[0].ID
	if err := a.answer(first, outbox.AckSuccess); err != nil {
		t.Fatal(err)
	}
	st := a.state(t, first)
	for _, again := range []outbox.AckOutcome{outbox.AckSuccess, outbox.AckRejection("too late"), outbox.AckSuccess} {
		if err := a.answer(first, again); err != nil {
			t.Fatalf("second answer %+v: %v, want a no-op", again, err)
		}
	}
	if again := a.state(t, first); again.Status != outbox.AckAcknowledged || again.Reason != "" ||
		!again.AnsweredAt.Equal(*st.AnsweredAt) {
		t.Fatalf("second answers changed the ack: %s %q answered %v (first answered %v)", again.Status, again.Reason, again.AnsweredAt, st.AnsweredAt)
	}

	// Answers racing for the same event: exactly one is recorded.
	second := events[1].ID
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			outcome := outbox.AckSuccess
			if i%2 == 1 {
				outcome = outbox.AckRejection(fmt.Sprintf("racer %d", i))
			}
			errs <- a.answer(second, outcome)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("racing answer: %v", err)
		}
	}
	won := a.state(t, second)
	if won.Status == outbox.AckAcknowledged && won.Reason != "" || won.Status == outbox.AckRejected && !strings.HasPrefix(won.Reason, "racer ") ||
		won.Status != outbox.AckAcknowledged && won.Status != outbox.AckRejected {
		t.Fatalf("racing answers left %s %q", won.Status, won.Reason)
	}

	// Unknown ids and bad outcomes: clear errors, and the caller's
	// transaction stays usable.
	tx, err := a.db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck
	ctx := context.Background()
	for _, id := range []string{uuid.NewString(), "not-an-id", "", "'; DROP TABLE x; --"} {
		if err := a.ob.Acknowledge(ctx, tx, id, outbox.AckSuccess); !errors.Is(err, outbox.ErrAckNotFound) {
			t.Fatalf("acknowledge unknown id %q: %v, want ErrAckNotFound", id, err)
		}
	}
	for _, reason := range []string{"bad \xff utf-8", "nul \x00 byte", strings.Repeat("x", outbox.MaxAckReasonBytes+1)} {
		if err := a.ob.Acknowledge(ctx, tx, second, outbox.AckRejection(reason)); !errors.Is(err, outbox.ErrInvalidAck) {
			t.Fatalf("acknowledge with reason %.20q: %v, want ErrInvalidAck", reason, err)
		}
	}
	if err := a.ob.Acknowledge(ctx, tx, second, outbox.AckRejection(outbox.SanitizeAckReason("bad \xff utf-8"))); err != nil {
		t.Fatalf("sanitized reason: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatalf("commit after refused answers: %v", err)
	}
	if again := a.state(t, second); again.Status != won.Status || again.Reason != won.Reason {
		t.Fatalf("answers after the first changed the ack: %s %q, was %s %q", again.Status, again.Reason, won.Status, won.Reason)
	}
}

// testAckSIGKILL runs the relay (and its ack sweep) as a subprocess that is
// SIGKILLed once resends have started and before their answers, then
// restarted; the test answers each event once it has been resent. Every
// event ends acknowledged exactly once, none is lost, resends stop.
func testAckSIGKILL(t *testing.T, h Harness, cellTest string) {
	a := setupAck(t, h, false)
	n := h.size(20, 60)
	backoff := 400 * time.Millisecond
	events := a.awaiting(n, outbox.AckPolicy{Deadline: backoff, MaxResends: 1000, ResendBackoff: backoff})
	a.insert(t, events...)

	dir := t.TempDir()
	jpath, logPath := filepath.Join(dir, "journal"), filepath.Join(dir, "children.log")
	spec := childSpec{Test: cellTest, Table: a.table, BrokerID: a.id, Journal: jpath, BatchSize: 10,
		Lease: 2 * time.Second, AckSweep: ackSweep, Role: "ackchild"}
	publishes := func() map[string]int {
		out := map[string]int{}
		for _, j := range readJournal(t, jpath) {
			out[j.id]++
		}
		return out
	}
	fail := func(format string, args ...any) {
		t.Helper()
		b, _ := os.ReadFile(logPath)
		t.Fatalf(format+"; subprocess relays' output:\n%s", append(args, tail(b, 4000))...)
	}

	// Generation 1: kill it once the first resends were published, before
	// anyone answered them.
	spec.Gen = 1
	c := startChild(t, spec, logPath)
	deadline := time.Now().Add(hangGuard)
	for {
		resent := 0
		for _, k := range publishes() {
			if k >= 2 {
				resent++
			}
		}
		if resent > 0 {
			break
		}
		if time.Now().After(deadline) {
			fail("no resend within %s", hangGuard)
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.kill()

	// Half the events are answered while no relay runs.
	answered := map[string]time.Time{}
	answer := func(id string) {
		if err := a.answer(id, outbox.AckSuccess); err != nil {
			t.Fatalf("acknowledge %s: %v", id, err)
		}
		answered[id] = *a.state(t, id).AnsweredAt
	}
	pubs := publishes()
	for _, ev := range events[:n/2] {
		if pubs[ev.ID] >= 1 {
			answer(ev.ID)
		}
	}

	// Generation 2 resends the rest; each is answered once resent again.
	spec.Gen = 2
	c = startChild(t, spec, logPath)
	before := publishes()
	deadline = time.Now().Add(hangGuard)
	for len(answered) < n {
		if time.Now().After(deadline) {
			fail("%d of %d events answered within %s", len(answered), n, hangGuard)
		}
		pubs := publishes()
		for _, ev := range events {
			if _, ok := answered[ev.ID]; !ok && pubs[ev.ID] > before[ev.ID] {
				answer(ev.ID)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(5 * backoff)
	final := publishes()
	time.Sleep(5 * backoff)
	after := publishes()
	c.stop()

	for _, ev := range events {
		st := a.state(t, ev.ID)
		if st.Status != outbox.AckAcknowledged || st.AnsweredAt == nil || !st.AnsweredAt.Equal(answered[ev.ID]) {
			t.Fatalf("event %s: ack %s answered %v, want acknowledged once at %v", ev.ID, st.Status, st.AnsweredAt, answered[ev.ID])
		}
		if final[ev.ID] < 1 {
			t.Fatalf("event %s was never published", ev.ID)
		}
		if after[ev.ID] != final[ev.ID] {
			t.Fatalf("event %s still resent after its answer: %d then %d publishes", ev.ID, final[ev.ID], after[ev.ID])
		}
	}
	if s := a.ackStats(t); s.Awaiting != 0 || s.Unacknowledged != 0 {
		t.Fatalf("stats at the end: %+v", s)
	}
	total := 0
	for _, k := range after {
		total += k
	}
	t.Logf("%d events acknowledged across a SIGKILL; %d publishes in all", n, total)
}
