package outbox

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/outboxkit/outboxkit/framework/internal/backoff"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// Stream mode: the relay of a driver that implements
// outboxdriver.Streamer reads committed events from the database's change
// stream instead of claiming them from the table. The events go through
// the same per-key scheduler as claimed batches (scheduler.go); since
// stream batches may share keys, the scheduler chains a key's runs across
// batches, and an event that fails parks its key in memory until its
// retry (the stream will not bring it back), while other keys flow.
//
// Every outcome is written to the event's row by one recorder goroutine,
// in the order the scheduler produced them: failed attempts and dead
// events exactly as the claim path writes them, delivered events as the
// driver is configured (postgres.NewCDC marks them delivered in one
// statement per write, or deletes them). The stream position is
// confirmed, in stream order, up to the last event whose fate is written
// or which is held in the table (a failed event, and the events of its key
// waiting behind it, are marked so that the next stream reads them from
// the table). A relay that crashes therefore resumes from the confirmed
// position without loss; the events after it are published again (at
// most the window: BatchSize × Concurrency events handed out and not
// confirmed).

// runStream relays from the driver's change stream until ctx ends,
// reopening the stream when it breaks.
func (r *Relay) runStream(ctx, hardCtx, stopCtx context.Context, path publishPath) error {
	pol := backoff.Policy{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	failures := 0
	for ctx.Err() == nil {
		start := time.Now()
		st, err := r.streamer.EventStreamOpen(ctx, &outboxdriver.EventStreamOpenParams{RelayID: r.cfg.ID, BatchSize: r.cfg.BatchSize, Logger: r.log})
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if errors.Is(err, outboxdriver.ErrStreamUnsupported) || errors.Is(err, outboxdriver.ErrInvalidConfig) {
				r.log.Error("change stream unavailable", "err", err)
				return err
			}
			if r.cfg.ClaimObserver != nil {
				r.observeClaim(ClaimOutcome{Err: err, Duration: time.Since(start)})
			}
			failures++
			r.log.Warn("opening the change stream failed, retrying", "err", err, "failures", failures)
			sleep(ctx, pol.Delay(failures))
			continue
		}
		failures = 0
		r.log.Info("change stream open")
		r.streamSession(ctx, hardCtx, stopCtx, path, st)
		if err := st.Close(); err != nil {
			r.log.Debug("closing the change stream", "err", err)
		}
	}
	return nil
}

// observeClaim calls RelayConfig.ClaimObserver; a panic in it is logged.
func (r *Relay) observeClaim(o ClaimOutcome) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("RelayConfig.ClaimObserver panicked", "panic", p)
		}
	}()
	r.cfg.ClaimObserver(o)
}

// streamSession is one open stream: its scheduler, its recorder and the
// confirmation of its positions.
type streamSession struct {
	*Relay
	st outboxdriver.EventStream

	mu sync.Mutex
	// fifo are the batches handed to the scheduler and not yet confirmed,
	// in stream order.
	fifo []*streamBatch
	// unsettled maps each handed-out row whose fate is neither written nor
	// held in the table to its batch.
	unsettled map[*outboxdriver.EventRow]*streamBatch
	ops       []streamOp // outcomes to write, in order
	// heldRows are the rows already held once: the mark stays until their
	// outcome is written, so a key that fails again holds them no more.
	heldRows map[*outboxdriver.EventRow]struct{}
	opsReady chan struct{} // signalled when ops grows
	// outstanding counts events handed out and not yet confirmed; room is
	// closed (and replaced) whenever it falls.
	outstanding int
	room        chan struct{}
	broken      bool // the stream failed a Confirm: confirm no more
	// cancel ends the session (when the stream breaks).
	cancel context.CancelFunc
}

// streamBatch is one StreamBatch on its way.
type streamBatch struct {
	end       uint64
	n         int // events
	unsettled int // events neither written nor held
}

// streamOp is one outcome to write.
type streamOp struct {
	row  *outboxdriver.EventRow
	kind int // opDelivered, opFailed, opHeld
	fa   outboxdriver.FailedAttempt
}

const (
	opDelivered = iota
	opFailed
	opHeld
)

func (r *Relay) streamSession(ctx, hardCtx, stopCtx context.Context, path publishPath, st outboxdriver.EventStream) {
	ss := &streamSession{Relay: r, st: st, unsettled: map[*outboxdriver.EventRow]*streamBatch{}, heldRows: map[*outboxdriver.EventRow]struct{}{},
		opsReady: make(chan struct{}, 1), room: make(chan struct{})}
	sessCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	ss.cancel = cancel
	window := r.window()
	sched := newScheduler(r, path, window)
	sched.stream = &streamKeys{hooks: ss, active: map[string]*keyRun{}, chained: map[string][]*keyRun{},
		parked: map[*keyRun]*time.Timer{}, retries: make(chan *keyRun, 16)}
	var scheduling, recording sync.WaitGroup
	scheduling.Go(func() { sched.run(sessCtx, hardCtx) })
	recCtx, stopRecording := context.WithCancel(stopCtx)
	recording.Go(func() { ss.record(recCtx, stopCtx) })

	for {
		start := time.Now()
		b, err := st.Next(sessCtx)
		if err != nil {
			if sessCtx.Err() == nil {
				r.log.Warn("change stream broke; reopening it", "err", err)
				if r.cfg.ClaimObserver != nil {
					r.observeClaim(ClaimOutcome{Err: err, Duration: time.Since(start)})
				}
			}
			break
		}
		if len(b.Rows) == 0 {
			continue
		}
		if r.cfg.ClaimObserver != nil {
			r.observeClaim(ClaimOutcome{Events: len(b.Rows), Duration: time.Since(start)})
		}
		if !ss.waitRoom(sessCtx, len(b.Rows), window) {
			break
		}
		sb := &streamBatch{end: b.End, n: len(b.Rows), unsettled: len(b.Rows)}
		ss.mu.Lock()
		for _, row := range b.Rows {
			ss.unsettled[row] = sb
		}
		ss.fifo = append(ss.fifo, sb)
		ss.mu.Unlock()
		select {
		case sched.in <- &claimedBatch{rows: b.Rows, done: func(*claimedBatch) {}}:
		case <-sessCtx.Done():
		}
		if sessCtx.Err() != nil {
			break
		}
	}
	// Stop starting events (those not started are streamed again); wait
	// for the ones in flight, then for their outcomes to be written.
	cancel()
	close(sched.in)
	scheduling.Wait()
	ss.signal()
	stopRecording()
	recording.Wait()
	ss.mu.Lock()
	r.log.Debug("change stream session ended", "unconfirmed_batches", len(ss.fifo), "unsettled_events", len(ss.unsettled),
		"outstanding", ss.outstanding)
	ss.mu.Unlock()
}

// waitRoom waits until n more events may be handed out (always when none
// are), and counts them; false when ctx ended.
func (ss *streamSession) waitRoom(ctx context.Context, n, window int) bool {
	for {
		ss.mu.Lock()
		if ss.outstanding == 0 || ss.outstanding+n <= window {
			ss.outstanding += n
			ss.mu.Unlock()
			return true
		}
		room := ss.room
		ss.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return false
		}
	}
}

func (ss *streamSession) push(op streamOp) {
	ss.mu.Lock()
	ss.ops = append(ss.ops, op)
	ss.mu.Unlock()
	ss.signal()
}

func (ss *streamSession) signal() {
	select {
	case ss.opsReady <- struct{}{}:
	default:
	}
}

// delivered implements streamHooks.
func (ss *streamSession) delivered(row *outboxdriver.EventRow) {
	ss.mu.Lock()
	delete(ss.heldRows, row)
	ss.mu.Unlock()
	ss.push(streamOp{row: row, kind: opDelivered})
}

// failed implements streamHooks.
func (ss *streamSession) failed(row *outboxdriver.EventRow, fa outboxdriver.FailedAttempt) {
	if fa.Dead {
		ss.mu.Lock()
		delete(ss.heldRows, row)
		ss.mu.Unlock()
	}
	ss.push(streamOp{row: row, kind: opFailed, fa: fa})
}

// held implements streamHooks.
func (ss *streamSession) held(rows []*outboxdriver.EventRow) {
	ss.mu.Lock()
	for _, row := range rows {
		if _, done := ss.heldRows[row]; done {
			continue
		}
		ss.heldRows[row] = struct{}{}
		ss.ops = append(ss.ops, streamOp{row: row, kind: opHeld})
	}
	ss.mu.Unlock()
	ss.signal()
}

// record writes outcomes in the order they came, as many at a time as
// are waiting, and confirms the stream after each write. It returns when
// ctx ends and everything pushed before has been written (or stopCtx
// ended: the shutdown deadline; what is unwritten is streamed again).
func (ss *streamSession) record(ctx, stopCtx context.Context) {
	pol := backoff.Policy{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	for {
		ss.mu.Lock()
		ops := ss.ops
		ss.ops = nil
		ss.mu.Unlock()
		if len(ops) == 0 {
			select {
			case <-ss.opsReady:
				continue
			case <-ctx.Done():
				// Outcomes pushed before the scheduler stopped are in ops.
				ss.mu.Lock()
				left := len(ss.ops)
				ss.mu.Unlock()
				if left == 0 {
					return
				}
				continue
			}
		}
		for len(ops) > 0 {
			group := splitOps(ops)
			ops = ops[len(group):]
			params := groupParams(group)
			for attempt := 1; ; attempt++ {
				err := ss.streamer.EventStreamRecord(stopCtx, params)
				if err == nil {
					break
				}
				if stopCtx.Err() != nil {
					ss.log.Error("giving up recording outcomes at shutdown; the events will be streamed again", "events", len(group), "err", err)
					return
				}
				ss.log.Warn("recording outcomes failed, retrying", "events", len(group), "attempt", attempt, "err", err)
				sleep(stopCtx, pol.Delay(attempt))
			}
			ss.settle(stopCtx, group)
		}
	}
}

// splitOps returns the longest prefix of ops that names no event twice,
// so that one write can apply it.
func splitOps(ops []streamOp) []streamOp {
	seen := make(map[string]struct{}, len(ops))
	for i, op := range ops {
		if _, dup := seen[op.row.ID]; dup {
			return ops[:i]
		}
		seen[op.row.ID] = struct{}{}
	}
	return ops
}

func groupParams(group []streamOp) *outboxdriver.EventStreamRecordParams {
	p := &outboxdriver.EventStreamRecordParams{}
	for _, op := range group {
		switch op.kind {
		case opDelivered:
			p.Delivered = append(p.Delivered, op.row.ID)
		case opFailed:
			p.Failures = append(p.Failures, op.fa)
		case opHeld:
			p.Held = append(p.Held, op.row.ID)
		}
	}
	return p
}

// settle counts the written outcomes of group and confirms the stream up
// to the end of the batches that have nothing unsettled left.
func (ss *streamSession) settle(ctx context.Context, group []streamOp) {
	ss.mu.Lock()
	for _, op := range group {
		if b, ok := ss.unsettled[op.row]; ok {
			delete(ss.unsettled, op.row)
			b.unsettled--
		}
	}
	var end uint64
	n, popped := 0, 0
	for _, b := range ss.fifo {
		if b.unsettled > 0 {
			break
		}
		end = max(end, b.end)
		n += b.n
		popped++
	}
	broken := ss.broken
	ss.mu.Unlock()
	if popped == 0 || broken {
		return
	}
	if end > 0 {
		if err := ss.st.Confirm(ctx, end); err != nil {
			ss.mu.Lock()
			ss.broken = true
			ss.mu.Unlock()
			ss.cancel()
			ss.log.Warn("confirming the change stream failed; the events after the last confirmed position will be streamed again", "err", err)
			return
		}
	}
	ss.mu.Lock()
	ss.fifo = ss.fifo[popped:]
	ss.outstanding -= n
	close(ss.room)
	ss.room = make(chan struct{})
	ss.mu.Unlock()
}
