package outbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// claimedBatch is one claim's events on their way through the scheduler,
// and their outcomes. Only the scheduler's goroutine touches it until it
// hands the batch to done.
type claimedBatch struct {
	rows      []*outboxdriver.EventRow
	left      int // events whose outcome is not known yet
	delivered []string
	failed    []outboxdriver.FailedAttempt
	released  []string
	// done receives the batch once every event has an outcome; it must not
	// block (it starts the recording of the outcomes).
	done func(*claimedBatch)
}

// keyRun is the events of one key in one batch, in Seq order; an event
// without a key is a run of its own. Its head is in flight or next to go.
type keyRun struct {
	b     *claimedBatch
	key   string // empty for an event without a key
	rows  []*outboxdriver.EventRow
	start time.Time // when the head's publish began
}

// settled is the outcome of a run's head, reported by the publishing path.
type settled struct {
	run *keyRun
	err error
}

// scheduler is the relay's one per-key scheduler, for every publishing
// path: it starts the first event of every key of the batches it is given,
// at most window publishes in flight, and starts a key's next event only
// once the previous one has an outcome. So each key's events reach the
// broker one at a time in Seq order, while different keys, and different
// batches, overlap freely: an event that is slow to fail holds back its
// own key only, and a batch is done as soon as its own events are, never
// waiting for another batch. It runs on one goroutine (run); publishing
// paths report outcomes on a channel.
type scheduler struct {
	*Relay
	path   publishPath
	window int

	in      chan *claimedBatch // closed by the claimer when it stops
	results chan settled       // buffered to window: a path never blocks on it

	inFlight int
	queue    []*keyRun // runs waiting for room in the window, FIFO
	open     int       // batches received and not yet done
	stopping bool

	// stream is set in stream mode (stream.go): batches may then share
	// keys, so the scheduler chains a key's runs across batches, and a
	// failed event parks its key in memory (the stream will not bring
	// its events back) instead of releasing it to the table.
	stream *streamKeys
}

// streamKeys is the scheduler's per-key state in stream mode.
type streamKeys struct {
	hooks streamHooks
	// active is the run of each key that is queued, in flight or parked;
	// later runs of the key wait in chained, in order.
	active  map[string]*keyRun
	chained map[string][]*keyRun
	// parked are runs waiting out a retry delay, with their timers.
	parked  map[*keyRun]*time.Timer
	retries chan *keyRun // parked runs whose delay ran out
}

// streamHooks receive a stream-mode scheduler's outcomes as they happen,
// on the scheduler's goroutine; they must not block.
type streamHooks interface {
	// delivered: the broker acknowledged row.
	delivered(row *outboxdriver.EventRow)
	// failed: an attempt of row failed (fa.Dead: for good).
	failed(row *outboxdriver.EventRow, fa outboxdriver.FailedAttempt)
	// held: rows wait behind a parked event of their key.
	held(rows []*outboxdriver.EventRow)
}

func newScheduler(r *Relay, path publishPath, window int) *scheduler {
	return &scheduler{Relay: r, path: path, window: window, in: make(chan *claimedBatch), results: make(chan settled, window)}
}

// run schedules the batches of s.in until it is closed and every batch
// received has been handed to its done func. Once ctx ends it starts
// nothing more: what has not started is released at once, and what is in
// flight waits for its outcome from the path, which reports errAborted
// when hardCtx ends first.
func (s *scheduler) run(ctx, hardCtx context.Context) {
	in, stop := s.in, ctx.Done()
	for in != nil || s.open > 0 {
		select {
		case b, ok := <-in:
			if !ok {
				in = nil
				continue
			}
			s.add(b)
		case r := <-s.results:
			s.inFlight--
			s.outcome(hardCtx, r)
		case run := <-s.retryC():
			delete(s.stream.parked, run)
			s.enqueue(run)
		case <-stop:
		}
		if !s.stopping && ctx.Err() != nil {
			stop, s.stopping = nil, true
			queued := s.queue
			s.queue = nil
			for _, run := range queued {
				s.release(run, run.rows)
			}
			if s.stream != nil {
				for run, t := range s.stream.parked {
					if t.Stop() {
						delete(s.stream.parked, run)
						s.release(run, run.rows)
					} // else its delay ran out: it arrives on retries
				}
			}
		}
		s.fill(hardCtx)
	}
}

// add splits a batch into key runs and queues them.
func (s *scheduler) add(b *claimedBatch) {
	s.open++
	b.left = len(b.rows)
	if b.left == 0 {
		s.finish(b)
		return
	}
	var runs []*keyRun
	byKey := map[string]*keyRun{}
	for _, row := range b.rows {
		if row.Key == "" {
			runs = append(runs, &keyRun{b: b, rows: []*outboxdriver.EventRow{row}})
			continue
		}
		run, ok := byKey[row.Key]
		if !ok {
			run = &keyRun{b: b, key: row.Key}
			byKey[row.Key] = run
			runs = append(runs, run)
		}
		run.rows = append(run.rows, row)
	}
	for _, run := range runs {
		if s.stream != nil && run.rows[0].Key != "" {
			s.chain(run)
			continue
		}
		s.enqueue(run)
	}
}

// retryC is the channel of parked runs due again (nil outside stream mode).
func (s *scheduler) retryC() chan *keyRun {
	if s.stream == nil {
		return nil
	}
	return s.stream.retries
}

// chain starts run (stream mode) when its key has no active run, and
// otherwise queues it behind the key's runs; when the key is parked, its
// rows are held.
func (s *scheduler) chain(run *keyRun) {
	key := run.rows[0].Key
	head, busy := s.stream.active[key]
	if !busy {
		s.stream.active[key] = run
		s.enqueue(run)
		return
	}
	s.stream.chained[key] = append(s.stream.chained[key], run)
	if _, parked := s.stream.parked[head]; parked {
		s.stream.hooks.held(run.rows)
	}
}

// runEnded starts the next chained run of run's key (stream mode).
func (s *scheduler) runEnded(run *keyRun) {
	if s.stream == nil || run.key == "" {
		return
	}
	if s.stream.active[run.key] != run {
		return
	}
	next := s.stream.chained[run.key]
	if len(next) == 0 {
		delete(s.stream.active, run.key)
		delete(s.stream.chained, run.key)
		return
	}
	s.stream.active[run.key] = next[0]
	s.stream.chained[run.key] = next[1:]
	s.enqueue(next[0])
}

// park keeps run, whose head failed, until delay has passed (stream
// mode): the key's events wait in memory, held in the table.
func (s *scheduler) park(run *keyRun, delay time.Duration) {
	var held []*outboxdriver.EventRow
	held = append(held, run.rows[1:]...)
	if run.key != "" {
		for _, c := range s.stream.chained[run.key] {
			held = append(held, c.rows...)
		}
	}
	if len(held) > 0 {
		s.stream.hooks.held(held)
	}
	retries := s.stream.retries
	s.stream.parked[run] = time.AfterFunc(delay, func() { retries <- run })
}

func (s *scheduler) enqueue(run *keyRun) {
	if s.stopping {
		s.release(run, run.rows)
		return
	}
	s.queue = append(s.queue, run)
}

// fill starts queued runs while the window has room.
func (s *scheduler) fill(hardCtx context.Context) {
	n := 0
	for n < len(s.queue) && s.inFlight < s.window {
		s.startHead(hardCtx, s.queue[n])
		n++
	}
	if n > 0 {
		s.queue = append(s.queue[:0], s.queue[n:]...)
	}
}

// startHead starts the publish of run's first event. A row that cannot
// become a message is dead at once, and so is a publish that fails before
// anything is in flight; the run then goes on with its next event, or is
// released, as after any outcome.
func (s *scheduler) startHead(hardCtx context.Context, run *keyRun) {
	for len(run.rows) > 0 {
		row := run.rows[0]
		if s.stopping {
			s.release(run, run.rows)
			return
		}
		msg, err := s.message(row)
		if err != nil {
			s.unreadable(run, err)
			continue
		}
		run.start = time.Now()
		err = s.path.begin(hardCtx, row.Topic, msg, func(err error) { s.results <- settled{run, err} })
		if err == nil {
			s.inFlight++
			return
		}
		if !s.settle(run, err) {
			return
		}
	}
}

// outcome applies the outcome of a run's head and, when the key may go on,
// starts its next event (or queues it when the window is full).
func (s *scheduler) outcome(hardCtx context.Context, r settled) {
	if errors.Is(r.err, errAborted) {
		// Outcome unknown (shutdown while in flight): the event will be
		// published again, possibly a duplicate.
		s.release(r.run, r.run.rows)
		return
	}
	if !s.settle(r.run, r.err) || len(r.run.rows) == 0 {
		return
	}
	if s.inFlight < s.window {
		s.startHead(hardCtx, r.run)
	} else {
		s.enqueue(r.run)
	}
}

// message builds the message of row; a panic while building it is an error.
func (s *scheduler) message(row *outboxdriver.EventRow) (msg *message.Message, err error) {
	defer func() {
		if p := recover(); p != nil {
			msg, err = nil, fmt.Errorf("building the message panicked: %v", p)
		}
	}()
	return s.path.message(row)
}

// unreadable marks run's head, which cannot become a message, dead; the
// key's later events go on.
func (s *scheduler) unreadable(run *keyRun, err error) {
	row := run.rows[0]
	s.log.Error("unreadable outbox row marked dead", "event_id", row.ID, "err", err)
	fa := outboxdriver.FailedAttempt{ID: row.ID, Error: truncate("unreadable row: "+err.Error(), maxErrorLen), Dead: true}
	run.b.failed = append(run.b.failed, fa)
	if s.stream != nil {
		s.stream.hooks.failed(row, fa)
	}
	s.observe(row, err, true, 0)
	s.advance(run)
}

// maxErrorLen bounds a recorded last_error, in bytes.
const maxErrorLen = 2000

// settle records the outcome of run's head (err nil: acknowledged) and
// reports whether the key's later events may follow: not when the event
// stays pending for a retry, in which case they are released.
func (s *scheduler) settle(run *keyRun, err error) bool {
	row := run.rows[0]
	d := time.Since(run.start)
	b := run.b
	if err == nil {
		b.delivered = append(b.delivered, row.ID)
		if s.stream != nil {
			s.stream.hooks.delivered(row)
		}
		s.observe(row, nil, false, d)
		s.advance(run)
		return true
	}
	attempt := row.Attempts + 1
	dead := attempt >= s.cfg.MaxAttempts
	fa := outboxdriver.FailedAttempt{ID: row.ID, Error: truncate(err.Error(), maxErrorLen), Dead: dead}
	if !dead {
		fa.Delay = s.backoff.Delay(attempt)
	}
	b.failed = append(b.failed, fa)
	s.observe(row, err, dead, d)
	if s.stream != nil {
		s.stream.hooks.failed(row, fa)
		if !dead {
			// The stream will not bring the event back: retry it from
			// memory once the delay has passed, its key waiting.
			row.Attempts = attempt
			s.log.Warn("publish failed, will retry", "event_id", row.ID, "type", row.Type, "attempt", attempt,
				"retry_in", fa.Delay.String(), "err", err)
			s.park(run, fa.Delay)
			return false
		}
	}
	s.advance(run)
	if dead {
		s.log.Error("event is dead", "event_id", row.ID, "type", row.Type, "attempts", attempt, "err", err)
		return true
	}
	s.log.Warn("publish failed, will retry", "event_id", row.ID, "type", row.Type, "attempt", attempt,
		"retry_in", fa.Delay.String(), "err", err)
	s.release(run, run.rows)
	return false
}

// advance drops run's head, which has its outcome.
func (s *scheduler) advance(run *keyRun) {
	run.rows = run.rows[1:]
	if len(run.rows) == 0 {
		s.runEnded(run)
	}
	s.settledEvents(run.b, 1)
}

// release gives back rows of run without an attempt: they stay pending.
func (s *scheduler) release(run *keyRun, rows []*outboxdriver.EventRow) {
	if len(rows) == 0 {
		return
	}
	for _, r := range rows {
		run.b.released = append(run.b.released, r.ID)
	}
	run.rows = nil
	s.runEnded(run)
	s.settledEvents(run.b, len(rows))
}

// settledEvents counts n more outcomes of b and hands b over when it has
// all of them.
func (s *scheduler) settledEvents(b *claimedBatch, n int) {
	b.left -= n
	if b.left == 0 {
		s.finish(b)
	}
}

func (s *scheduler) finish(b *claimedBatch) {
	s.open--
	b.done(b)
}

// observe tells RelayConfig.Observer about an attempt. A panicking
// observer is logged and the outcome stands: the broker's answer is what
// counts, and turning an observer's bug into failed attempts would publish
// the event again and again.
func (s *scheduler) observe(row *outboxdriver.EventRow, err error, dead bool, d time.Duration) {
	if s.cfg.Observer == nil {
		return
	}
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("RelayConfig.Observer panicked; outcome kept", "event_id", row.ID, "panic", fmt.Sprint(p))
		}
	}()
	s.cfg.Observer(Outcome{EventID: row.ID, Type: row.Type, Topic: row.Topic, CreatedAt: row.CreatedAt,
		Err: err, Attempt: row.Attempts + 1, Dead: dead, Duration: d})
}
