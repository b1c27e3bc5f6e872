package bench

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// latencyMethod says what the latency figures measure, for the report.
const latencyMethod = "commit → receipt by a durable consumer of the broker (the broker module's own Subscriber, " +
	"acking at once), clocked in the bench process just after COMMIT returned and when the message arrived. " +
	"The relay runs in another process, so its Observer is not reachable; a consumer only receives what the " +
	"broker stored and acknowledged, so this is commit → broker ack plus the delivery hop to the consumer " +
	"(an upper bound). The trickle starts with the relay idle: the events committed before the first one " +
	"arrived measure its wake-up and are reported apart; the percentiles are those of the others."

// latency runs the trickle: one event per transaction to topic at
// cfg.Rate for duration, with a relay already running on t.
func (r *run) latency(ctx context.Context, t *Target, topic string, duration time.Duration) (*Latency, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	msgs, err := r.broker.Subscriber.Subscribe(sctx, topic)
	if err != nil {
		return nil, fmt.Errorf("subscribe to %s: %w", topic, err)
	}
	var (
		mu       sync.Mutex
		received = map[string]time.Time{}
		gotAll   = make(chan struct{})
		want     = -1
	)
	go func() {
		for m := range msgs {
			at := time.Now()
			m.Ack()
			mu.Lock()
			if _, dup := received[m.UUID]; !dup {
				received[m.UUID] = at
			}
			if want >= 0 && len(received) >= want {
				select {
				case <-gotAll:
				default:
					close(gotAll)
				}
			}
			mu.Unlock()
		}
	}()

	payload := r.payload()
	db := t.Driver.DB()
	committed := map[string]time.Time{}
	var order []string // ids in commit order
	var writes []time.Duration
	tick := time.NewTicker(time.Second / time.Duration(r.cfg.Rate))
	defer tick.Stop()
	start := time.Now()
	for i := 0; time.Since(start) < duration; i++ {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
		e := r.event(topic, i, payload)
		began := time.Now()
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return nil, err
		}
		if err := t.Outbox.Insert(ctx, tx, e); err != nil {
			_ = tx.Rollback()
			return nil, err
		}
		if err := tx.Commit(); err != nil {
			return nil, err
		}
		committed[e.ID] = time.Now()
		writes = append(writes, committed[e.ID].Sub(began))
		order = append(order, e.ID)
	}
	elapsed := time.Since(start)

	mu.Lock()
	want = len(committed)
	if len(received) >= want {
		close(gotAll)
	}
	mu.Unlock()
	select {
	case <-gotAll:
	case <-time.After(30 * time.Second):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	cancel()

	mu.Lock()
	defer mu.Unlock()
	if len(received) == 0 {
		return nil, fmt.Errorf("no trickle event reached the broker's consumer (%d committed)", len(committed))
	}
	// The relay starts the trickle idle, polling at its slowest: the events
	// committed before the first one arrived measure its wake-up, the
	// others the flow at Rate.
	var firstArrival time.Time
	for _, at := range received {
		if firstArrival.IsZero() || at.Before(firstArrival) {
			firstArrival = at
		}
	}
	var lat []time.Duration
	var wake, wakeEvents int
	var wakeFirst time.Duration
	for _, id := range order {
		at, ok := received[id]
		if !ok {
			continue
		}
		d := max(0, at.Sub(committed[id]))
		wake++
		if wake == 1 {
			wakeFirst = d
		}
		if committed[id].Before(firstArrival) {
			wakeEvents++
			continue
		}
		lat = append(lat, d)
	}
	if len(lat) == 0 {
		return nil, fmt.Errorf("the trickle ended before its first event arrived (%d committed): use a longer --duration", len(committed))
	}
	slices.Sort(lat)
	slices.Sort(writes)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return &Latency{
		TargetRate:   r.cfg.Rate,
		AchievedRate: float64(len(committed)) / elapsed.Seconds(),
		Committed:    len(committed),
		Received:     wake,
		P50Ms:        ms(percentile(lat, 0.50)),
		P90Ms:        ms(percentile(lat, 0.90)),
		P99Ms:        ms(percentile(lat, 0.99)),
		MaxMs:        ms(lat[len(lat)-1]),
		WakeMs:       ms(wakeFirst),
		WakeEvents:   wakeEvents,
		WriterP50Ms:  ms(percentile(writes, 0.50)),
		WriterP99Ms:  ms(percentile(writes, 0.99)),
		Method:       latencyMethod,
	}, nil
}

// percentile returns the nearest-rank q-quantile of sorted durations.
func percentile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
