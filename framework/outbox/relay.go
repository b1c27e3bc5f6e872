package outbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/outboxkit/outboxkit/framework/internal/backoff"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// RelayConfig configures a Relay. Every zero field takes the default its
// comment gives.
type RelayConfig struct {
	// ID names this relay in leases and logs; it must be unique among running
	// relays. Zero means "<hostname>-<pid>-<random>".
	ID string

	// BatchSize is how many events one claim leases. It also bounds the
	// duplicates a crash can cause (at most one batch). Zero means 100;
	// at most 10000.
	BatchSize int

	// Concurrency is how many batches the relay works on at once (each in
	// its own goroutine: claim, publish, record). More than one overlaps the
	// database round trips of one batch with the broker round trips of
	// another. Per-key order holds whatever the value (batches exclude each
	// other's keys as relays do), but a crash may duplicate up to
	// Concurrency batches instead of one. Zero means 1; at most 64.
	Concurrency int

	// PollInterval is the longest the relay sleeps when a claim finds
	// nothing ready (an idle relay polls at this rate). Zero means 200ms.
	PollInterval time.Duration

	// MinPollInterval is the sleep after a claim found nothing while events
	// were flowing recently: the relay keeps polling at this rate for about
	// PollInterval after the last non-empty claim, then doubles the sleep
	// up to PollInterval (adaptive polling: low latency while events flow,
	// cheap when idle). An Insert by an Outbox of the same process on the
	// same table also brings the relay back to this rate at once (an
	// in-process nudge), so a service that writes and relays in one process
	// does not wait out an idle poll. Zero means 10ms, or PollInterval when
	// that is smaller.
	MinPollInterval time.Duration

	// LeaseDuration applies to leased claims (drivers without
	// outboxdriver.HeldClaimer, e.g. SQLite): how long claimed
	// events stay reserved for this relay without a heartbeat; the relay
	// extends it every LeaseDuration/3 while it works. After a crash, other
	// relays (or this one restarted) take the events over once it expires.
	// Held claims (PostgreSQL, MySQL) need no lease: a crashed relay's transaction
	// ends with its connection. Zero means 30s; minimum 1s.
	LeaseDuration time.Duration

	// PublishTimeout fails an attempt whose broker acknowledgement has not
	// arrived in time (the event is retried later; a late ack can cause one
	// duplicate). Zero means 15s.
	PublishTimeout time.Duration

	// MaxAttempts is how many failed publishes make an event dead. Zero means
	// 30: with the default backoff an event dies after 54 to 108 minutes of
	// continuous failure, so a broker outage of an hour needs no manual
	// resend. 1 means no retry.
	MaxAttempts int

	// BackoffMin is the delay after the first failed attempt; each further
	// failure doubles it, with jitter, up to BackoffMax. Zero means 1s.
	// With held claims (PostgreSQL, MySQL) a retried event is claimed up to
	// about a second after its delay ran out: while events flow, claims
	// start where the previous batch started, and once a second from the
	// start of the table.
	BackoffMin time.Duration

	// BackoffMax caps the retry delay. Zero means 5m.
	BackoffMax time.Duration

	// ShutdownTimeout bounds how long Run waits, once its context is
	// cancelled, for in-flight publishes and for recording their outcome.
	// Zero means 10s.
	ShutdownTimeout time.Duration

	// Publish chooses how events reach the Publisher: PublishForwarder
	// (zero value: Watermill's forwarder and its envelope) or PublishDirect
	// (the same messages without the envelope's JSON round trip, for less
	// CPU per event). See PublishPath.
	Publish PublishPath

	// Middlewares decorate the Watermill handler that publishes each event
	// (e.g. metrics or tracing from watermill/message/router/middleware, or
	// outboxotel.PublishSpans). With PublishForwarder they see the
	// forwarder's envelope message, with PublishDirect the event message;
	// either way its UUID and metadata are the event's. A middleware
	// returning an error fails the attempt.
	Middlewares []message.HandlerMiddleware

	// Observer, when set, is told the outcome of every attempt (for metrics).
	// It must not block.
	Observer func(Outcome)

	// ClaimObserver, when set, is told the result of every claim: how many
	// events it returned, or the database error that made it fail (for
	// metrics and health: a relay whose claims fail is not relaying). It
	// must not block.
	ClaimObserver func(ClaimOutcome)

	// Logger receives operational logs, also Watermill's. Nil discards them.
	Logger *slog.Logger
}

// PublishPath is how the relay hands each claimed event to the Publisher.
// Both paths publish the same message (the event id as UUID, the payload,
// the event's metadata) to the event's topic, one event at a time per key.
type PublishPath string

const (
	// PublishForwarder wraps each event in the JSON envelope of Watermill's
	// forwarder (components/forwarder) and feeds it to the stock forwarder,
	// whose router unwraps and publishes it. It is the default, and the path
	// a service migrating from Watermill's SQL forwarder already runs.
	PublishForwarder PublishPath = "forwarder"

	// PublishDirect calls the Middlewares-wrapped publishing handler with the
	// event message itself: no envelope to marshal and unmarshal, no router
	// hand-offs. Same messages, same contract, less relay CPU per event
	// (docs/performance.md has the figures). Without Middlewares, a
	// Publisher that implements AsyncPublisher is used through it.
	PublishDirect PublishPath = "direct"
)

// AsyncPublisher is an optional interface of the relay's Publisher (the NATS
// broker module's implements it). With PublishDirect and no Middlewares the
// relay starts each publish with PublishAsync and waits for its outcome,
// instead of calling Publish on a goroutine of its own: a client that
// pipelines publishes over one reply subscription (JetStream's async
// publish) saves a goroutine hand-off and a request set-up per event.
// Per-key order is unchanged: the relay still waits for an event's outcome
// before it starts the key's next event.
type AsyncPublisher interface {
	message.Publisher
	// PublishAsync starts publishing msg to topic and returns without
	// waiting; an error means nothing was sent. wait, called once, returns
	// nil once the broker acknowledged msg, the broker's error if it refused
	// it, or ctx's error if ctx ended first (outcome unknown).
	PublishAsync(topic string, msg *message.Message) (wait func(ctx context.Context) error, err error)
}

// Outcome describes one publish attempt, for RelayConfig.Observer.
type Outcome struct {
	EventID   string
	Type      string
	Topic     string
	CreatedAt time.Time
	// Err is nil when the broker acknowledged the event.
	Err error
	// Attempt is the attempt number (1 for the first publish).
	Attempt int
	// Dead is true when this failure made the event dead.
	Dead bool
	// Duration is the time from handing the event to the publishing path
	// (the forwarder, or the Publisher with PublishDirect) to its outcome.
	Duration time.Duration
}

// ClaimOutcome describes one claim, for RelayConfig.ClaimObserver.
type ClaimOutcome struct {
	// Events is how many events the claim returned (0 when idle or failed).
	Events int
	// Err is the claim's error (nil when it succeeded, also when empty).
	Err error
	// Duration is how long the claim took.
	Duration time.Duration
}

func (c RelayConfig) withDefaults() RelayConfig {
	if c.ID == "" {
		host, _ := os.Hostname()
		c.ID = fmt.Sprintf("%s-%d-%s", cmp.Or(host, "relay"), os.Getpid(), uuid.NewString()[:8])
	}
	c.BatchSize = cmp.Or(c.BatchSize, 100)
	c.Concurrency = cmp.Or(c.Concurrency, 1)
	c.PollInterval = cmp.Or(c.PollInterval, 200*time.Millisecond)
	c.MinPollInterval = min(cmp.Or(c.MinPollInterval, 10*time.Millisecond), c.PollInterval)
	c.LeaseDuration = cmp.Or(c.LeaseDuration, 30*time.Second)
	c.PublishTimeout = cmp.Or(c.PublishTimeout, 15*time.Second)
	c.MaxAttempts = cmp.Or(c.MaxAttempts, 30)
	c.BackoffMin = cmp.Or(c.BackoffMin, time.Second)
	c.BackoffMax = cmp.Or(c.BackoffMax, 5*time.Minute)
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, 10*time.Second)
	c.Publish = cmp.Or(c.Publish, PublishForwarder)
	if c.Logger == nil {
		c.Logger = discardLogger()
	}
	return c
}

func (c RelayConfig) validate() error {
	switch {
	case len(c.ID) > 128:
		return configError("ID longer than 128 bytes")
	case c.BatchSize < 1 || c.BatchSize > 10000:
		return configError("BatchSize %d out of range 1..10000", c.BatchSize)
	case c.Concurrency < 1 || c.Concurrency > 64:
		return configError("Concurrency %d out of range 1..64", c.Concurrency)
	case c.PollInterval < time.Millisecond:
		return configError("PollInterval %s must be at least 1ms", c.PollInterval)
	case c.MinPollInterval < time.Millisecond:
		return configError("MinPollInterval %s must be at least 1ms", c.MinPollInterval)
	case c.LeaseDuration < time.Second:
		return configError("LeaseDuration %s must be at least 1s", c.LeaseDuration)
	case c.PublishTimeout <= 0:
		return configError("PublishTimeout %s must be positive", c.PublishTimeout)
	case c.MaxAttempts < 1:
		return configError("MaxAttempts %d must be at least 1", c.MaxAttempts)
	case c.BackoffMin <= 0:
		return configError("BackoffMin %s must be positive", c.BackoffMin)
	case c.BackoffMax < c.BackoffMin:
		return configError("BackoffMax %s must not be below BackoffMin %s", c.BackoffMax, c.BackoffMin)
	case c.ShutdownTimeout <= 0:
		return configError("ShutdownTimeout %s must be positive", c.ShutdownTimeout)
	case c.Publish != PublishForwarder && c.Publish != PublishDirect:
		return configError("Publish %q is not %q or %q", c.Publish, PublishForwarder, PublishDirect)
	}
	return nil
}

// Relay publishes committed outbox events to a broker and records each one's
// fate. It is built on Watermill: by default a subscriber over the outbox
// table feeds Watermill's forwarder (components/forwarder), which unwraps
// each envelope and publishes it with the given message.Publisher, through
// the forwarder router's middlewares. With RelayConfig.Publish set to
// PublishDirect the same messages go through the middlewares to the
// Publisher without the envelope.
//
// Several relays may run against the same table (in one process or many):
// claims are serialized in the database, so per-key order holds.
type Relay struct {
	driver    outboxdriver.Driver
	publisher message.Publisher
	cfg       RelayConfig
	backoff   backoff.Policy
	log       *slog.Logger

	runMu sync.Mutex
	ran   bool
}

// NewRelay returns a relay that moves events from driver's table to
// publisher. The relay does not close the publisher.
func NewRelay(driver outboxdriver.Driver, publisher message.Publisher, cfg RelayConfig) (*Relay, error) {
	if driver == nil {
		return nil, configError("driver must not be nil")
	}
	if publisher == nil {
		return nil, configError("publisher must not be nil")
	}
	_, held := driver.(outboxdriver.HeldClaimer)
	_, leased := driver.(outboxdriver.LeasedClaimer)
	if !held && !leased {
		return nil, configError("driver %T implements no claim protocol (outboxdriver.HeldClaimer or outboxdriver.LeasedClaimer)", driver)
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Relay{
		driver:    driver,
		publisher: publisher,
		cfg:       cfg,
		backoff:   backoff.Policy{Min: cfg.BackoffMin, Max: cfg.BackoffMax},
		log:       cfg.Logger.With("relay", cfg.ID, "table", driver.Table()),
	}, nil
}

// ID returns the relay's id as recorded in leases.
func (r *Relay) ID() string { return r.cfg.ID }

// Run relays events until ctx is cancelled, then stops claiming, waits up to
// ShutdownTimeout for in-flight publishes, records their outcome, releases
// the events it did not attempt and returns nil. Database and broker outages
// are logged and retried, never returned. Run may be called once.
func (r *Relay) Run(ctx context.Context) error {
	r.runMu.Lock()
	if r.ran {
		r.runMu.Unlock()
		return errors.New("outbox: Relay.Run called twice")
	}
	r.ran = true
	r.runMu.Unlock()

	send, stopPublishing, err := r.startPublishing(ctx)
	if err != nil || send == nil {
		return err
	}
	_, async := send.(*asyncSender)
	r.log.Info("relay started", "batch_size", r.cfg.BatchSize, "lease", r.cfg.LeaseDuration, "publish", r.cfg.Publish, "async_publisher", async)

	var wake <-chan struct{}
	if n, ok := r.driver.(outboxdriver.Notifier); ok {
		if wake, err = n.EventNotifications(ctx); err != nil {
			r.log.Warn("insert notifications unavailable, polling only", "err", err)
			wake = nil
		}
	}
	var wg sync.WaitGroup
	for range r.cfg.Concurrency {
		nudged, unsubscribe := nudges.subscribe(nudgeKey(r.driver))
		wg.Go(func() {
			defer unsubscribe()
			(&worker{Relay: r, send: send, wake: wake, nudged: nudged}).loop(ctx)
		})
	}
	wg.Wait()
	stopPublishing()
	r.log.Info("relay stopped")
	return nil
}

// startPublishing sets up the configured PublishPath. It returns a nil
// sender, and no error, when ctx ends while the forwarder starts.
func (r *Relay) startPublishing(ctx context.Context) (sender, func(), error) {
	if r.cfg.Publish == PublishDirect {
		if ap, ok := r.publisher.(AsyncPublisher); ok && len(r.cfg.Middlewares) == 0 {
			return &asyncSender{pub: ap, timeout: r.cfg.PublishTimeout}, func() {}, nil
		}
		s := newDirectSender(r.publisher, r.cfg.Middlewares, r.cfg.PublishTimeout)
		return s, s.close, nil
	}
	sub := newTableSubscriber()
	middlewares := append([]message.HandlerMiddleware{captureError}, r.cfg.Middlewares...)
	fwd, err := forwarder.NewForwarder(sub, slotPublisher{r.publisher}, quietRouterLogger{watermill.NewSlogLogger(r.cfg.Logger)}, forwarder.Config{
		ForwarderTopic: r.driver.Table(),
		Middlewares:    middlewares,
		CloseTimeout:   r.cfg.ShutdownTimeout,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("outbox: start forwarder: %w", err)
	}
	// The forwarder's router gets its own context: on shutdown we first drain
	// our in-flight messages through it, then close it.
	fwdDone := make(chan error, 1)
	go func() { fwdDone <- fwd.Run(context.WithoutCancel(ctx)) }()
	select {
	case <-fwd.Running():
	case err := <-fwdDone:
		return nil, nil, fmt.Errorf("outbox: forwarder stopped at start: %w", err)
	case <-ctx.Done():
		_ = fwd.Close()
		<-fwdDone
		return nil, nil, nil
	}
	stop := func() {
		if err := fwd.Close(); err != nil {
			r.log.Warn("closing forwarder", "err", err)
		}
		<-fwdDone
	}
	return &forwarderSender{sub: sub, timeout: r.cfg.PublishTimeout}, stop, nil
}

// worker is one Run's claim/publish/mark loop.
type worker struct {
	*Relay
	send   sender
	wake   <-chan struct{} // insert notifications (nil: poll only)
	nudged <-chan struct{} // inserts by an Outbox of this process
}

func (w *worker) loop(ctx context.Context) {
	dbBackoff := backoff.Policy{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	dbFailures := 0
	idle := w.cfg.MinPollInterval
	var lastWork time.Time
	held, _ := w.driver.(outboxdriver.HeldClaimer)
	params := &outboxdriver.EventClaimBatchParams{RelayID: w.cfg.ID, Limit: w.cfg.BatchSize, Lease: w.cfg.LeaseDuration}
	var hint scanHint
	for ctx.Err() == nil {
		var n int
		var first int64
		var err error
		params.FromSeq = hint.from()
		claimStart := time.Now()
		if held != nil {
			n, first, err = w.heldBatch(ctx, held, params)
		} else {
			n, first, err = w.leasedBatch(ctx, w.driver.(outboxdriver.LeasedClaimer), params)
		}
		if err == nil {
			hint.claimed(params.FromSeq, n, first)
		}
		if w.cfg.ClaimObserver != nil && (err == nil || ctx.Err() == nil) {
			w.cfg.ClaimObserver(ClaimOutcome{Events: n, Err: err, Duration: time.Since(claimStart)})
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			dbFailures++
			w.log.Warn("claim failed, retrying", "err", err, "failures", dbFailures)
			sleep(ctx, dbBackoff.Delay(dbFailures))
			continue
		}
		dbFailures = 0
		if n == 0 {
			woken, nudged := w.idle(ctx, idle)
			if woken {
				continue // woken by a commit: claim at once
			}
			if nudged {
				// An insert of this process (committed soon, if not yet):
				// claim, then poll as while events flow.
				idle, lastWork = w.cfg.MinPollInterval, time.Now()
				continue
			}
			if time.Since(lastWork) > w.cfg.PollInterval {
				idle = min(idle*2, w.cfg.PollInterval)
			}
			continue
		}
		idle, lastWork = w.cfg.MinPollInterval, time.Now()
	}
}

// leasedBatch claims a batch with leases (EventClaimBatch), publishes it
// while a heartbeat extends the leases, and records the outcome.
func (w *worker) leasedBatch(ctx context.Context, leased outboxdriver.LeasedClaimer, params *outboxdriver.EventClaimBatchParams) (n int, first int64, err error) {
	rows, err := leased.EventClaimBatch(ctx, params)
	if err != nil || len(rows) == 0 {
		return 0, 0, err
	}
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	heartbeatCtx, stopHeartbeat := context.WithCancel(context.WithoutCancel(ctx))
	go w.heartbeat(heartbeatCtx, leased, ids)
	res := w.publish(ctx, rows)
	stopHeartbeat()
	w.record(ctx, leased, res)
	return len(rows), rows[0].Seq, nil
}

// heldBatch claims a batch whose rows stay locked in the driver's
// transaction while they are published, then records the outcome and
// commits in that transaction. Released events need no write: they stay
// pending when the transaction ends.
func (w *worker) heldBatch(ctx context.Context, held outboxdriver.HeldClaimer, params *outboxdriver.EventClaimBatchParams) (n int, first int64, err error) {
	// The transaction must outlive ctx's cancellation so that a graceful
	// shutdown can still commit what was published.
	batch, err := held.EventClaimHeld(context.WithoutCancel(ctx), params)
	if err != nil {
		return 0, 0, err
	}
	rows := batch.Rows()
	if len(rows) == 0 {
		return 0, 0, batch.Abort()
	}
	res := w.publish(ctx, rows)
	finishCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.ShutdownTimeout)
	defer cancel()
	if err := batch.Finish(finishCtx, res.delivered, res.failed); err != nil {
		// Nothing was recorded; the rows are unlocked and pending again, so
		// they are published again (duplicates, never loss).
		w.log.Error("recording outcomes failed; the batch will be published again", "events", len(rows), "err", err)
		_ = batch.Abort()
	}
	return len(rows), rows[0].Seq, nil
}

// rescanEvery is how long a worker may claim from its scan hint before it
// claims from the start again.
const rescanEvery = time.Second

// scanHint is a worker's EventClaimBatchParams.FromSeq: while a backlog
// drains, the next claim may start where the previous batch started, so
// that it does not step again over the index entries of everything
// delivered before (they stay in the index until vacuum or purge). Events
// left below it (released after a failure, committed late with a smaller
// Seq, held by another relay that then gave them back) are found by the
// claim from the start that comes at least every rescanEvery. New events
// have larger Seqs, so an idle relay polls from the hint too and steps over
// the delivered backlog's index entries only once a second.
type scanHint struct {
	seq      int64     // first Seq of the previous batch; 0: none
	fromZero time.Time // last claim from the start
}

// from returns the FromSeq of the next claim.
func (h *scanHint) from() int64 {
	if h.seq > 0 && time.Since(h.fromZero) < rescanEvery {
		return h.seq
	}
	return 0
}

// claimed records a claim made from fromSeq that returned n events, the
// first at Seq first.
func (h *scanHint) claimed(fromSeq int64, n int, first int64) {
	if fromSeq == 0 {
		h.fromZero = time.Now()
	}
	if n > 0 {
		h.seq = first
	}
}

// batchResult collects the outcome of one claimed batch.
type batchResult struct {
	mu        sync.Mutex
	delivered []string
	failed    []outboxdriver.FailedAttempt
	released  []string
}

// publish publishes one claimed batch: keys in parallel, each key's events
// one at a time in Seq order. It returns every outcome.
func (w *worker) publish(ctx context.Context, rows []*outboxdriver.EventRow) *batchResult {
	var groups [][]*outboxdriver.EventRow
	byKey := map[string]int{}
	for _, row := range rows {
		if row.Key == "" {
			groups = append(groups, []*outboxdriver.EventRow{row})
			continue
		}
		i, ok := byKey[row.Key]
		if !ok {
			i = len(groups)
			byKey[row.Key] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], row)
	}

	// hardStop ends waiting for acks ShutdownTimeout after ctx is cancelled.
	hardCtx, cancelHard := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHard()
	stopWatch := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(w.cfg.ShutdownTimeout, cancelHard)
		context.AfterFunc(hardCtx, func() { t.Stop() })
	})
	defer stopWatch()

	res := &batchResult{}
	if s, ok := w.send.(*asyncSender); ok {
		w.publishPipelined(ctx, hardCtx, s, groups, res)
		return res
	}
	var wg sync.WaitGroup
	for _, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.publishGroup(ctx, hardCtx, g, res)
		}()
	}
	wg.Wait()
	return res
}

// heartbeat extends the leases of ids every LeaseDuration/3 until ctx ends.
func (w *worker) heartbeat(ctx context.Context, leased outboxdriver.LeasedClaimer, ids []string) {
	t := time.NewTicker(w.cfg.LeaseDuration / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := leased.EventExtendLeases(ctx, &outboxdriver.EventExtendLeasesParams{
				RelayID: w.cfg.ID, IDs: ids, Lease: w.cfg.LeaseDuration,
			}); err != nil {
				w.log.Warn("extending leases failed", "err", err)
			}
		}
	}
}

// publishGroup publishes one key's events in order. A failure that leaves
// the event pending releases the rest of the group, so later events of that
// key wait behind it (per-key order); a dead event does not hold them back.
func (w *worker) publishGroup(ctx, hardCtx context.Context, group []*outboxdriver.EventRow, res *batchResult) {
	for i, row := range group {
		if ctx.Err() != nil {
			res.release(group[i:])
			return
		}
		msg, err := w.send.message(row)
		if err != nil {
			w.unreadable(row, err, res)
			continue
		}
		start := time.Now()
		err = w.send.publish(hardCtx, row.Topic, msg)
		if errors.Is(err, errAborted) {
			// Outcome unknown (shutdown while in flight): release; the event
			// will be published again, possibly a duplicate.
			res.release(group[i:])
			return
		}
		if !w.settle(row, err, time.Since(start), res) {
			res.release(group[i+1:])
			return
		}
	}
}

// asyncWindow bounds the publishes of one batch that publishPipelined keeps
// in flight at once.
const asyncWindow = 1024

// inFlight is one event publishPipelined started and has not settled.
type inFlight struct {
	group []*outboxdriver.EventRow // the event, then its key's later events
	wait  func(context.Context) error
	start time.Time
}

// publishPipelined is publish over an AsyncPublisher, on the worker's own
// goroutine: it starts the first event of every key (at most asyncWindow
// in flight), then settles outcomes in the order their publishes started,
// and each settled event that lets its key go on starts the key's next
// event. Per-key order and failure handling are publishGroup's: a key's
// next event starts only after the previous one's outcome, and a failure
// that leaves an event pending releases the key's later events.
func (w *worker) publishPipelined(ctx, hardCtx context.Context, s *asyncSender, groups [][]*outboxdriver.EventRow, res *batchResult) {
	var queue []inFlight
	// startHead starts the first readable event of group, or settles the
	// group without a publish in flight.
	startHead := func(group []*outboxdriver.EventRow) {
		for i, row := range group {
			if ctx.Err() != nil {
				res.release(group[i:])
				return
			}
			msg, err := s.message(row)
			if err != nil {
				w.unreadable(row, err, res)
				continue
			}
			start := time.Now()
			wait, err := s.start(hardCtx, row.Topic, msg)
			if err == nil {
				queue = append(queue, inFlight{group: group[i:], wait: wait, start: start})
				return
			}
			if !w.settle(row, err, time.Since(start), res) {
				res.release(group[i+1:])
				return
			}
		}
	}
	for len(groups) > 0 || len(queue) > 0 {
		for len(groups) > 0 && len(queue) < asyncWindow {
			startHead(groups[0])
			groups = groups[1:]
		}
		if len(queue) == 0 {
			continue
		}
		f := queue[0]
		queue = queue[1:]
		err := s.wait(hardCtx, f.start, f.wait)
		switch {
		case errors.Is(err, errAborted):
			res.release(f.group)
		case w.settle(f.group[0], err, time.Since(f.start), res):
			startHead(f.group[1:])
		default:
			res.release(f.group[1:])
		}
	}
}

// unreadable marks a row that cannot become a message dead.
func (w *worker) unreadable(row *outboxdriver.EventRow, err error, res *batchResult) {
	w.log.Error("unreadable outbox row marked dead", "event_id", row.ID, "err", err)
	res.fail(outboxdriver.FailedAttempt{ID: row.ID, Error: "unreadable row: " + err.Error(), Dead: true})
	w.observe(row, err, true, 0)
}

// settle records the outcome of publishing row (err nil: acknowledged),
// which took d. It reports whether the key's later events may follow: not
// when the event stays pending for a retry.
func (w *worker) settle(row *outboxdriver.EventRow, err error, d time.Duration, res *batchResult) bool {
	if err == nil {
		res.deliver(row.ID)
		w.observe(row, nil, false, d)
		return true
	}
	attempt := row.Attempts + 1
	dead := attempt >= w.cfg.MaxAttempts
	fa := outboxdriver.FailedAttempt{ID: row.ID, Error: truncate(err.Error(), 2000), Dead: dead}
	if !dead {
		fa.Delay = w.backoff.Delay(attempt)
	}
	res.fail(fa)
	w.observe(row, err, dead, d)
	if dead {
		w.log.Error("event is dead", "event_id", row.ID, "type", row.Type, "attempts", attempt, "err", err)
		return true
	}
	w.log.Warn("publish failed, will retry", "event_id", row.ID, "type", row.Type, "attempt", attempt, "retry_in", fa.Delay, "err", err)
	return false
}

var errAborted = errors.New("outbox: relay stopped while the event was in flight")

// sender is a PublishPath: it turns a claimed row into the message to hand
// over, then publishes it and waits for the outcome.
type sender interface {
	// message builds the message for row; an error means the row cannot be
	// published at all (it is marked dead).
	message(row *outboxdriver.EventRow) (*message.Message, error)
	// publish sends msg to topic. It returns nil once the broker
	// acknowledged it, errAborted when hardCtx ended first (outcome
	// unknown), or the attempt's error.
	publish(hardCtx context.Context, topic string, msg *message.Message) error
}

func (w *worker) observe(row *outboxdriver.EventRow, err error, dead bool, d time.Duration) {
	if w.cfg.Observer == nil {
		return
	}
	w.cfg.Observer(Outcome{EventID: row.ID, Type: row.Type, Topic: row.Topic, CreatedAt: row.CreatedAt,
		Err: err, Attempt: row.Attempts + 1, Dead: dead, Duration: d})
}

// record writes the batch's outcomes. It retries through database outages;
// once ShutdownTimeout has passed after ctx was cancelled it gives up, and
// the leases expire so that the events are published again (duplicates, never
// loss).
func (w *worker) record(ctx context.Context, leased outboxdriver.LeasedClaimer, res *batchResult) {
	stopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(w.cfg.ShutdownTimeout, cancel) })
	defer stop()

	steps := []struct {
		name string
		n    int
		run  func(context.Context) error
	}{
		{"mark delivered", len(res.delivered), func(c context.Context) error {
			_, err := leased.EventMarkDelivered(c, &outboxdriver.EventMarkDeliveredParams{RelayID: w.cfg.ID, IDs: res.delivered})
			return err
		}},
		{"mark failed", len(res.failed), func(c context.Context) error {
			_, err := leased.EventMarkFailed(c, &outboxdriver.EventMarkFailedParams{RelayID: w.cfg.ID, Failures: res.failed})
			return err
		}},
		{"release", len(res.released), func(c context.Context) error {
			_, err := leased.EventRelease(c, &outboxdriver.EventReleaseParams{RelayID: w.cfg.ID, IDs: res.released})
			return err
		}},
	}
	pol := backoff.Policy{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	for _, s := range steps {
		if s.n == 0 {
			continue
		}
		for attempt := 1; ; attempt++ {
			err := s.run(stopCtx)
			if err == nil {
				break
			}
			if stopCtx.Err() != nil {
				w.log.Error("giving up recording outcomes at shutdown; events will be published again after their lease expires",
					"step", s.name, "events", s.n, "err", err)
				return
			}
			w.log.Warn("recording outcomes failed, retrying", "step", s.name, "events", s.n, "attempt", attempt, "err", err)
			sleep(stopCtx, pol.Delay(attempt))
		}
	}
}

func (b *batchResult) deliver(id string) {
	b.mu.Lock()
	b.delivered = append(b.delivered, id)
	b.mu.Unlock()
}

func (b *batchResult) fail(f outboxdriver.FailedAttempt) {
	b.mu.Lock()
	b.failed = append(b.failed, f)
	b.mu.Unlock()
}

func (b *batchResult) release(rows []*outboxdriver.EventRow) {
	if len(rows) == 0 {
		return
	}
	b.mu.Lock()
	for _, r := range rows {
		b.released = append(b.released, r.ID)
	}
	b.mu.Unlock()
}

// idle waits d, or until an insert notification (woken) or a nudge from an
// Outbox of this process (nudged) arrives.
func (w *worker) idle(ctx context.Context, d time.Duration) (woken, nudged bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	case _, ok := <-w.wake:
		return ok, false
	case <-w.nudged:
		return false, true
	}
	return false, false
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
