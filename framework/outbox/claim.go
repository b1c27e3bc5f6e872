package outbox

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/outboxkit/outboxkit/framework/internal/backoff"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// claimer is a Run's claim loop: it claims a batch whenever fewer than
// Concurrency batches are open, so the next claim overlaps the publishes of
// the batches before it, and hands each batch to the scheduler. A batch
// stays open (its slot taken) until its outcomes are recorded.
type claimer struct {
	*Relay
	sched  *scheduler
	slots  chan struct{} // one per open batch
	closed chan struct{} // a batch closed (capacity 1)
	// unbounded is when the last claim without a ScanLimit began.
	unbounded time.Time
	hint      scanHint
	records   sync.WaitGroup
	stopCtx   context.Context // ends ShutdownTimeout after Run's context
	wake      <-chan struct{} // insert notifications (nil: poll only)
	nudged    <-chan struct{} // inserts by an Outbox of this process
}

// loop claims until ctx ends, then closes the scheduler's input.
func (c *claimer) loop(ctx context.Context) {
	defer close(c.sched.in)
	dbBackoff := backoff.Policy{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	dbFailures := 0
	idle := c.cfg.MinPollInterval
	var lastWork time.Time
	// misses counts the claims in a row that, made beside an open batch,
	// found nothing; alone is how many claims to make alone (no batch open)
	// before trying one beside an open batch again.
	misses, alone := 0, 0
	params := &outboxdriver.EventClaimBatchParams{RelayID: c.cfg.ID, Limit: c.cfg.BatchSize, Lease: c.cfg.LeaseDuration}
	for {
		select {
		case c.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		overlapped := len(c.slots) > 1
		if overlapped && alone > 0 {
			// With fewer keys than a batch holds, the open batches hold
			// every key: a claim beside them finds nothing (and scans its
			// window for it). Wait for one to close. An insert, or a
			// batch open for a PollInterval (a slow publish), ends the
			// wait: the claim beside the open batches finds the others.
			<-c.slots
			if why := c.idle(ctx, c.cfg.PollInterval, true); why == wokenByClose {
				alone--
			} else {
				alone = 0
			}
			continue
		}
		params.FromSeq = c.hint.from()
		start := time.Now()
		bounded := overlapped && start.Sub(c.unbounded) < c.cfg.PollInterval
		params.ScanLimit = 0
		if bounded {
			params.ScanLimit = scanWindow * params.Limit
		} else {
			c.unbounded = start
		}
		b, err := c.claim(ctx, params)
		n := 0
		if b != nil {
			n = len(b.rows)
		}
		if c.cfg.ClaimObserver != nil && (err == nil || ctx.Err() == nil) {
			c.observeClaim(ClaimOutcome{Events: n, Err: err, Duration: time.Since(start)})
		}
		if err != nil {
			<-c.slots
			if ctx.Err() != nil {
				return
			}
			dbFailures++
			c.log.Warn("claim failed, retrying", "err", err, "failures", dbFailures)
			sleep(ctx, dbBackoff.Delay(dbFailures))
			continue
		}
		dbFailures = 0
		if overlapped {
			if n == 0 {
				misses++
				alone = 1 << min(misses, maxAloneShift)
			} else {
				misses, alone = 0, 0
			}
		}
		if n == 0 {
			c.hint.claimed(params.FromSeq, params.Limit, nil, bounded)
			<-c.slots
			if overlapped && alone > 0 {
				continue // the wait above, for a batch to close
			}
			switch c.idle(ctx, idle, len(c.slots) > 0) {
			case wokenByCommit, wokenByClose: // claim at once
			case wokenByNudge:
				// An insert of this process (committed soon, if not yet):
				// claim, then poll as while events flow.
				idle, lastWork = c.cfg.MinPollInterval, time.Now()
			default:
				if time.Since(lastWork) > c.cfg.PollInterval {
					idle = min(idle*2, c.cfg.PollInterval)
				}
			}
			continue
		}
		c.hint.claimed(params.FromSeq, params.Limit, b, bounded)
		idle, lastWork = c.cfg.MinPollInterval, time.Now()
		c.sched.in <- b
	}
}

// scanWindow × BatchSize is the ScanLimit of a bounded claim.
const scanWindow = 4

// A claim made beside an open batch of the relay gets a ScanLimit: the
// batch's keys would make it step over all their later events (with fewer
// keys than a batch holds, the whole backlog). It gets none when the last
// unbounded claim began a PollInterval ago or more, so that events beyond
// the window are found within a PollInterval even while batches stay open.
// After such a claim finds nothing (misses in a row), the next 2^misses
// claims (at most 2^maxAloneShift) that would be made beside an open batch
// first wait for a batch to close: the relay then runs about one batch at a
// time, which is all its keys allow. An insert, or no close within a
// PollInterval, ends that mode.
const maxAloneShift = 5

// close frees b's slot once its outcomes are written, and wakes a claimer
// that found nothing while b was open.
func (c *claimer) close(b *claimedBatch) {
	c.hint.closedBatch(b)
	<-c.slots
	select {
	case c.closed <- struct{}{}:
	default:
	}
}

// claim claims one batch with the driver's protocol; nil when nothing is
// ready.
func (c *claimer) claim(ctx context.Context, params *outboxdriver.EventClaimBatchParams) (*claimedBatch, error) {
	if c.held != nil {
		return c.claimHeld(ctx, params)
	}
	return c.claimLeased(ctx, params)
}

// heldLimit bounds the life of a held claim's transaction: every publish
// has an outcome PublishTimeout after it began, and the outcome is then
// written in one statement per kind. A claim or a Finish that a hung
// database does not answer ends with it (the transaction rolls back: the
// events are published again), so a hung database cannot stall the relay
// nor its shutdown.
func (r *Relay) heldLimit() time.Duration {
	return r.cfg.PublishTimeout + max(r.cfg.ShutdownTimeout, 10*time.Second)
}

// claimHeld claims a batch whose rows stay locked in the driver's
// transaction while they are published; the outcome is recorded and
// committed in that transaction. Released events need no write: they stay
// pending when the transaction ends.
func (c *claimer) claimHeld(ctx context.Context, params *outboxdriver.EventClaimBatchParams) (*claimedBatch, error) {
	// The transaction outlives ctx's cancellation, so that a graceful
	// shutdown can still commit what was published, but not the shutdown.
	txCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.heldLimit())
	stop := context.AfterFunc(c.stopCtx, cancel)
	end := func() { stop(); cancel() }
	hb, err := c.held.EventClaimHeld(txCtx, params)
	if err != nil {
		end()
		return nil, err
	}
	rows := hb.Rows()
	if len(rows) == 0 {
		err := hb.Abort()
		end()
		return nil, err
	}
	b := &claimedBatch{rows: rows}
	b.done = func(b *claimedBatch) {
		c.records.Go(func() {
			defer c.close(b)
			defer end()
			if err := hb.Finish(txCtx, b.delivered, b.failed); err != nil {
				// Nothing was recorded; the rows are unlocked and pending
				// again, so they are published again (duplicates, never loss).
				c.log.Error("recording outcomes failed; the batch will be published again", "events", len(b.rows), "err", err)
				_ = hb.Abort()
			}
		})
	}
	return b, nil
}

// claimLeased claims a batch with leases, extends them while the batch is
// published, and records the outcomes with statements fenced by the lease.
func (c *claimer) claimLeased(ctx context.Context, params *outboxdriver.EventClaimBatchParams) (*claimedBatch, error) {
	rows, err := c.leased.EventClaimBatch(ctx, params)
	if err != nil || len(rows) == 0 {
		return nil, err
	}
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	hbCtx, stopHeartbeat := context.WithCancel(context.WithoutCancel(ctx))
	c.records.Go(func() { c.heartbeat(hbCtx, ids) })
	b := &claimedBatch{rows: rows}
	b.done = func(b *claimedBatch) {
		c.records.Go(func() {
			defer c.close(b)
			// The leases stay extended until the outcomes are written: a
			// lease that ran out while they were being written would let a
			// claim (this relay's next one too) publish the events again.
			defer stopHeartbeat()
			c.recordLeased(b)
		})
	}
	return b, nil
}

// heartbeat extends the leases of ids every LeaseDuration/3 until ctx ends.
func (c *claimer) heartbeat(ctx context.Context, ids []string) {
	t := time.NewTicker(c.cfg.LeaseDuration / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := c.leased.EventExtendLeases(ctx, &outboxdriver.EventExtendLeasesParams{
				RelayID: c.cfg.ID, IDs: ids, Lease: c.cfg.LeaseDuration,
			}); err != nil && ctx.Err() == nil {
				c.log.Warn("extending leases failed", "err", err)
			}
		}
	}
}

// recordLeased writes a leased batch's outcomes: one statement per kind
// of outcome. It retries through database outages until the shutdown
// deadline; then it gives up, and the leases expire so that the events
// are published again (duplicates, never loss).
func (c *claimer) recordLeased(b *claimedBatch) {
	steps := []struct {
		name string
		n    int
		run  func(context.Context) error
	}{
		{"mark delivered", len(b.delivered), func(ctx context.Context) error {
			_, err := c.leased.EventMarkDelivered(ctx, &outboxdriver.EventMarkDeliveredParams{RelayID: c.cfg.ID, IDs: b.delivered})
			return err
		}},
		{"mark failed", len(b.failed), func(ctx context.Context) error {
			_, err := c.leased.EventMarkFailed(ctx, &outboxdriver.EventMarkFailedParams{RelayID: c.cfg.ID, Failures: b.failed})
			return err
		}},
		{"release", len(b.released), func(ctx context.Context) error {
			_, err := c.leased.EventRelease(ctx, &outboxdriver.EventReleaseParams{RelayID: c.cfg.ID, IDs: b.released})
			return err
		}},
	}
	pol := backoff.Policy{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	for _, s := range steps {
		if s.n == 0 {
			continue
		}
		for attempt := 1; ; attempt++ {
			err := s.run(c.stopCtx)
			if err == nil {
				break
			}
			if c.stopCtx.Err() != nil {
				c.log.Error("giving up recording outcomes at shutdown; events will be published again after their lease expires",
					"step", s.name, "events", s.n, "err", err)
				return
			}
			c.log.Warn("recording outcomes failed, retrying", "step", s.name, "events", s.n, "attempt", attempt, "err", err)
			sleep(c.stopCtx, pol.Delay(attempt))
		}
	}
}

// rescanEvery is how long the claimer may claim from its scan hint before
// it claims from the start again.
const rescanEvery = time.Second

// scanHint is the claimer's EventClaimBatchParams.FromSeq: while events
// flow, a claim starts at the first event of the oldest open batch (else
// of the last batch claimed), or lower where an earlier claim may have left
// events behind, so that it does not step again over the index entries of
// everything delivered before (they stay in the index until vacuum or
// purge) and still finds every event it can take. A claim made while other
// batches are open steps over the keys they hold: the events it leaves
// behind lie between the open batches' first events and its own last one
// (a region), and claims start at or below that region until one has
// scanned through it. Events left further below (a row held by another
// relay that then gave it back, a transaction that committed long after
// taking its Seq) are found by the claim from the start that comes at least
// every rescanEvery. Per-key order does not rest on the hint.
type scanHint struct {
	mu       sync.Mutex
	last     int64                   // first Seq of the last batch claimed; 0: none
	open     map[*claimedBatch]int64 // first Seq of each open batch
	regions  []seqRegion             // where claims may have left events behind
	fromZero time.Time               // last claim from the start
	// openAtFrom is the lowest first Seq of the batches open when from was
	// called (0: none): the claim that follows steps over their keys, even
	// if they close before it returns.
	openAtFrom int64
}

// seqRegion is a range of Seqs a claim may have stepped over.
type seqRegion struct{ from, to int64 }

// from returns the FromSeq of the next claim.
func (h *scanHint) from() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.openAtFrom = 0
	for _, seq := range h.open {
		if h.openAtFrom == 0 || seq < h.openAtFrom {
			h.openAtFrom = seq
		}
	}
	if h.last == 0 || time.Since(h.fromZero) >= rescanEvery {
		return 0
	}
	from := h.last
	if h.openAtFrom > 0 {
		from = min(from, h.openAtFrom)
	}
	for _, r := range h.regions {
		from = min(from, r.from)
	}
	return from
}

// claimed records the claim that followed the last from: at most limit
// events from fromSeq, which returned b (nil: none); bounded when it had a
// ScanLimit.
func (h *scanHint) claimed(fromSeq int64, limit int, b *claimedBatch, bounded bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if fromSeq == 0 {
		h.fromZero = time.Now()
	}
	// How far the claim scanned: to its last event, or to the end when it
	// took fewer than it could. A bounded claim that took fewer stopped
	// somewhere after its last event: count only what it surely scanned.
	end := int64(math.MaxInt64)
	switch {
	case b != nil && (len(b.rows) >= limit || bounded):
		end = b.rows[len(b.rows)-1].Seq
	case bounded:
		end = fromSeq
	}
	kept := h.regions[:0]
	for _, r := range h.regions {
		if fromSeq > r.from || end < r.to {
			kept = append(kept, r)
		}
	}
	h.regions = kept
	if h.openAtFrom > 0 {
		h.regions = append(h.regions, seqRegion{from: h.openAtFrom, to: end})
	}
	if b == nil {
		return
	}
	if h.open == nil {
		h.open = map[*claimedBatch]int64{}
	}
	h.last = b.rows[0].Seq
	h.open[b] = h.last
}

// closedBatch records that b's outcomes are written.
func (h *scanHint) closedBatch(b *claimedBatch) {
	h.mu.Lock()
	delete(h.open, b)
	h.mu.Unlock()
}

// wakeReason is what ended an idle wait.
type wakeReason int

const (
	wokenByTimer  wakeReason = iota // d passed, or ctx ended
	wokenByCommit                   // an insert notification
	wokenByNudge                    // an insert by an Outbox of this process
	wokenByClose                    // an open batch closed: its keys are free
)

// idle waits d, or until an insert notification or a nudge from an Outbox
// of this process arrives; with open batches, also until one of them
// closes.
func (c *claimer) idle(ctx context.Context, d time.Duration, open bool) wakeReason {
	var closed <-chan struct{}
	if open {
		closed = c.closed
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-closed:
		return wokenByClose
	case _, ok := <-c.wake:
		if ok {
			return wokenByCommit
		}
	case <-c.nudged:
		return wokenByNudge
	}
	return wokenByTimer
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
