package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/outboxkit/outboxkit/framework/outbox"
)

// poison runs the poison scenario on a fresh table: one relay process;
// cfg.Poison events, one per key, to a topic the broker refuses on every
// attempt; then the trickle of other keys' events at cfg.Rate for
// cfg.PoisonDuration, whose commit → receipt latency is reported.
func (r *run) poison(ctx context.Context, rep int, trickleTopic string) (*Poison, error) {
	t, table, done, err := r.openTable(ctx, fmt.Sprintf("_p%d", rep))
	if err != nil {
		return nil, err
	}
	defer done()
	procs, _, err := r.startRelays(ctx, table, 1)
	if err != nil {
		return nil, err
	}
	defer stopAll(procs)

	payload := r.payload()
	keys := make([]string, r.cfg.Poison)
	events := make([]*outbox.Event, r.cfg.Poison)
	for i := range events {
		keys[i] = fmt.Sprintf("poison-%d", i)
		events[i] = &outbox.Event{Type: "bench.poison", Topic: r.poisonTo, Key: keys[i], Payload: payload}
	}
	db := t.Driver.DB()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	if err := t.Outbox.Insert(ctx, tx, events...); err != nil {
		_ = tx.Rollback()
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	// The trickle starts once the relay tried (and failed) every poison
	// event once: from then on they are being retried.
	r.progress("%s × %s: %d poison events, waiting for their first failure", r.dialect, r.scheme, r.cfg.Poison)
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := r.poisonState(ctx, t, keys)
		if err != nil {
			return nil, err
		}
		if st.delivered > 0 {
			return nil, fmt.Errorf("a poison event to %s was delivered: the broker did not refuse it", r.poisonTo)
		}
		if st.failedOnce == len(keys) {
			break
		}
		if err := procs[0].alive(); err != nil {
			return nil, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the relay did not attempt the poison events within 30s (%d of %d failed once)", st.failedOnce, len(keys))
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return nil, err
		}
	}

	r.progress("%s × %s: trickle of other keys at %d events/s for %s", r.dialect, r.scheme, r.cfg.Rate, r.cfg.PoisonDuration)
	m := r.meter(ctx, db, procs)
	lat, err := r.latency(ctx, t, trickleTopic, r.cfg.PoisonDuration)
	if err != nil {
		return nil, err
	}
	lat.RelayCPUPercent, lat.DBCPUPercent, lat.DBCPUScope = m.read(ctx)
	lat.RelayPeakRSSMB = m.peakRSS()
	st, err := r.poisonState(ctx, t, keys)
	if err != nil {
		return nil, err
	}
	if st.delivered > 0 {
		return nil, fmt.Errorf("a poison event to %s was delivered: the broker did not refuse it", r.poisonTo)
	}
	return &Poison{Keys: r.cfg.Poison, Topic: r.poisonTo, Attempts: st.attempts, LastError: st.lastError, Latency: *lat}, nil
}

type poisonState struct {
	failedOnce, delivered, attempts int
	lastError                       string
}

func (r *run) poisonState(ctx context.Context, t *Target, keys []string) (poisonState, error) {
	var st poisonState
	for _, k := range keys {
		page, err := t.Outbox.List(ctx, outbox.ListFilter{Key: k, Limit: 10})
		if err != nil {
			return st, err
		}
		for _, e := range page.Events {
			if e.Status == outbox.StatusDelivered {
				st.delivered++
			}
			if e.Attempts > 0 {
				st.failedOnce++
				st.lastError = e.LastError
			}
			st.attempts += e.Attempts
		}
	}
	return st, nil
}
