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

	// BatchSize is how many events one claim takes. It also bounds the
	// duplicates a crash can cause (at most BatchSize x Concurrency
	// events). Zero means 500; at most 10000.
	BatchSize int

	// Concurrency is how many claimed batches the relay has open at once.
	// The relay claims the next batch as soon as fewer are open, so claims
	// overlap the publishes of the batches before them, and a batch whose
	// events are slow to settle does not hold up the others. Per-key order
	// holds whatever the value (open batches never share a key), but a
	// crash may duplicate up to Concurrency batches instead of one, and each
	// open batch of a held claim (PostgreSQL, MySQL) keeps a database
	// connection. Zero means 2; at most 64.
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

	// ShutdownTimeout bounds how long Run takes to stop once its context is
	// cancelled: in-flight publishes get three quarters of it, recording
	// their outcomes the rest. Zero means 10s.
	ShutdownTimeout time.Duration

	// Publish chooses how events reach the Publisher: PublishDirect (zero
	// value: the event messages through the Middlewares to the Publisher,
	// pipelined when it implements AsyncPublisher) or PublishForwarder
	// (Watermill's forwarder and its envelope). See PublishPath.
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

	// AckSweepInterval is how often the relay looks for events inserted
	// with Event.AwaitAck whose answer is overdue, resends them through the
	// driver's retry-by-id path (the same event id), and gives up on those
	// resent AckPolicy.MaxResends times (unacknowledged). Relays sweeping
	// at once never resend an event twice for one deadline (each resend is
	// a conditional update of the ack row). Zero means
	// DefaultAckSweepInterval (1s); negative turns the sweep off in this
	// relay (another relay, or none, must sweep). Only drivers that
	// implement outboxdriver.Acknowledger are swept.
	AckSweepInterval time.Duration

	// Logger receives operational logs, also Watermill's. Nil discards them.
	Logger *slog.Logger
}

// DefaultAckSweepInterval is RelayConfig.AckSweepInterval's default.
const DefaultAckSweepInterval = time.Second

// PublishPath is how the relay hands each claimed event to the Publisher.
// Both paths publish the same message (the event id as UUID, the payload,
// the event's metadata) to the event's topic, one event at a time per key.
type PublishPath string

const (
	// PublishForwarder wraps each event in the JSON envelope of Watermill's
	// forwarder (components/forwarder) and feeds it to the stock forwarder,
	// whose router unwraps and publishes it: the path a service migrating
	// from Watermill's SQL forwarder already runs, with the same contract,
	// at a higher CPU cost per event (docs/performance.md).
	PublishForwarder PublishPath = "forwarder"

	// PublishDirect calls the Middlewares-wrapped publishing handler with the
	// event message itself: no envelope to marshal and unmarshal, no router
	// hand-offs. Same messages, same contract, less relay CPU per event
	// (docs/performance.md has the figures). Without Middlewares, a
	// Publisher that implements AsyncPublisher is used through it. It is
	// the default.
	PublishDirect PublishPath = "direct"
)

// AsyncPublisher is an optional interface of the relay's Publisher (the
// networked broker modules of outboxkit implement it: NATS, Kafka, RabbitMQ,
// Redis Streams). With PublishDirect and no
// Middlewares the relay starts each publish with PublishAsync and waits
// for its outcome on a small pool of goroutines, instead of calling Publish
// on a goroutine per event in flight: a client that pipelines publishes
// (JetStream's async publish, AMQP confirms, a Kafka async producer,
// pipelined Redis commands) saves a hand-off and a round trip per event.
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

// DefaultBatchSize is RelayConfig.BatchSize's default.
const DefaultBatchSize = 500

// DefaultConcurrency is RelayConfig.Concurrency's default.
const DefaultConcurrency = 2

func (c RelayConfig) withDefaults() RelayConfig {
	if c.ID == "" {
		host, _ := os.Hostname()
		c.ID = fmt.Sprintf("%s-%d-%s", cmp.Or(host, "relay"), os.Getpid(), uuid.NewString()[:8])
	}
	c.BatchSize = cmp.Or(c.BatchSize, DefaultBatchSize)
	c.Concurrency = cmp.Or(c.Concurrency, DefaultConcurrency)
	c.PollInterval = cmp.Or(c.PollInterval, 200*time.Millisecond)
	c.MinPollInterval = min(cmp.Or(c.MinPollInterval, 10*time.Millisecond), c.PollInterval)
	c.LeaseDuration = cmp.Or(c.LeaseDuration, 30*time.Second)
	c.PublishTimeout = cmp.Or(c.PublishTimeout, 15*time.Second)
	c.MaxAttempts = cmp.Or(c.MaxAttempts, 30)
	c.BackoffMin = cmp.Or(c.BackoffMin, time.Second)
	c.BackoffMax = cmp.Or(c.BackoffMax, 5*time.Minute)
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, 10*time.Second)
	c.Publish = cmp.Or(c.Publish, PublishDirect)
	c.AckSweepInterval = cmp.Or(c.AckSweepInterval, DefaultAckSweepInterval)
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
	case c.AckSweepInterval > 0 && c.AckSweepInterval < time.Millisecond:
		return configError("AckSweepInterval %s must be at least 1ms (or negative: no sweep)", c.AckSweepInterval)
	}
	return nil
}

// Relay publishes committed outbox events to a broker and records each one's
// fate. It is built on Watermill: each event becomes a Watermill message
// (the event id as UUID, its metadata) published by the given
// message.Publisher through Watermill handler middlewares; with
// RelayConfig.Publish set to PublishForwarder the events go through
// Watermill's forwarder (components/forwarder) and its envelope instead.
//
// Inside, one claimer claims batches (up to Concurrency open at once), one
// per-key scheduler publishes them (one event in flight per key, different
// keys and batches in parallel), and each batch's outcomes are written in
// one statement per kind of outcome as soon as its own events have
// settled. Several relays may run against the same table (in one process
// or many): the driver's claim protocol keeps a key in one open batch at a
// time, so per-key order holds.
//
// A driver that implements outboxdriver.Streamer (postgres.NewCDC) is
// relayed in stream mode instead: the events come from the database's
// change stream in commit order, through the same per-key scheduler, and
// the stream is confirmed only as far as every event's fate is written.
// Relays of one stream are hot standbys of each other. BatchSize and
// Concurrency then bound the events handed out and not yet confirmed
// (what a crash may publish again); PollInterval, MinPollInterval and
// LeaseDuration do not apply.
type Relay struct {
	driver    outboxdriver.Driver
	publisher message.Publisher
	cfg       RelayConfig
	backoff   backoff.Policy
	log       *slog.Logger

	held     outboxdriver.HeldClaimer
	leased   outboxdriver.LeasedClaimer
	streamer outboxdriver.Streamer

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
	held, _ := driver.(outboxdriver.HeldClaimer)
	leased, _ := driver.(outboxdriver.LeasedClaimer)
	streamer, _ := driver.(outboxdriver.Streamer)
	if held == nil && leased == nil && streamer == nil {
		return nil, configError("driver %T implements no claim protocol (outboxdriver.HeldClaimer or outboxdriver.LeasedClaimer) nor outboxdriver.Streamer", driver)
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
		held:      held,
		leased:    leased,
		streamer:  streamer,
	}, nil
}

// ID returns the relay's id as recorded in leases.
func (r *Relay) ID() string { return r.cfg.ID }

// Run relays events until ctx is cancelled, then stops claiming, waits for
// in-flight publishes, records their outcome, and returns nil. The whole
// stop takes at most ShutdownTimeout: in-flight publishes get three
// quarters of it (those still unanswered then are released, to be published
// again), recording the outcomes the rest. Database and broker outages are
// logged and retried, never returned. Run may be called once.
func (r *Relay) Run(ctx context.Context) error {
	r.runMu.Lock()
	if r.ran {
		r.runMu.Unlock()
		return errors.New("outbox: Relay.Run called twice")
	}
	r.ran = true
	r.runMu.Unlock()

	// hardCtx ends in-flight publishes, stopCtx the recording of outcomes.
	hardCtx, cancelHard := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHard()
	stopCtx, cancelStop := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelStop()
	stopWatch := context.AfterFunc(ctx, func() {
		r.log.Info("relay shutting down", "shutdown_timeout", r.cfg.ShutdownTimeout.String())
		time.AfterFunc(r.cfg.ShutdownTimeout*3/4, cancelHard)
		time.AfterFunc(r.cfg.ShutdownTimeout, cancelStop)
	})
	defer stopWatch()

	path, stopPublishing, err := r.startPublishing(ctx)
	if err != nil || path == nil {
		return err
	}
	_, async := path.(*asyncPath)
	if r.streamer != nil {
		r.log.Info("relay started", "batch_size", r.cfg.BatchSize, "concurrency", r.cfg.Concurrency,
			"publish", r.cfg.Publish, "async_publisher", async, "mode", "stream")
		// The sweep ends with the stream, also when the stream fails.
		sweepCtx, endSweep := context.WithCancel(ctx)
		var sweeping sync.WaitGroup
		sweeping.Go(func() { r.sweepAcks(sweepCtx) })
		err := r.runStream(ctx, hardCtx, stopCtx, path)
		endSweep()
		sweeping.Wait()
		stopPublishing(stopCtx)
		r.log.Info("relay stopped")
		return err
	}
	r.log.Info("relay started", "batch_size", r.cfg.BatchSize, "concurrency", r.cfg.Concurrency,
		"publish", r.cfg.Publish, "async_publisher", async, "claim", r.protocol())

	var wake <-chan struct{}
	if n, ok := r.driver.(outboxdriver.Notifier); ok {
		if wake, err = n.EventNotifications(ctx); err != nil {
			r.log.Warn("insert notifications unavailable, polling only", "err", err)
			wake = nil
		}
	}
	nudged, unsubscribe := nudges.subscribe(nudgeKey(r.driver))
	defer unsubscribe()

	sched := newScheduler(r, path, r.window())
	c := &claimer{Relay: r, sched: sched, slots: make(chan struct{}, r.cfg.Concurrency), closed: make(chan struct{}, 1), stopCtx: stopCtx, wake: wake, nudged: nudged}
	var scheduling sync.WaitGroup
	scheduling.Go(func() { sched.run(ctx, hardCtx) })
	scheduling.Go(func() { r.sweepAcks(ctx) })
	c.loop(ctx)
	scheduling.Wait()
	// The batches' outcomes are being recorded; the publishing path stops
	// meanwhile (the forwarder's router waits for handlers still stuck in
	// a Publish, up to the shutdown deadline).
	var stopping sync.WaitGroup
	stopping.Go(func() { stopPublishing(stopCtx) })
	c.records.Wait()
	stopping.Wait()
	r.log.Info("relay stopped")
	return nil
}

// protocol names the driver's claim protocol, for logs.
func (r *Relay) protocol() string {
	if r.streamer != nil {
		return "stream"
	}
	if r.held != nil {
		return "held"
	}
	return "leased"
}

// window is how many publishes the scheduler keeps in flight at most:
// every event of the open batches.
func (r *Relay) window() int { return min(r.cfg.BatchSize*r.cfg.Concurrency, maxWindow) }

// maxWindow bounds the publishes in flight (and the goroutines waiting
// for them) whatever BatchSize and Concurrency are.
const maxWindow = 8192

// startPublishing sets up the configured PublishPath and returns it with
// the func that stops it. It returns a nil path, and no error, when ctx
// ends while the forwarder starts.
func (r *Relay) startPublishing(ctx context.Context) (publishPath, func(context.Context), error) {
	if r.cfg.Publish == PublishDirect {
		var p publishPath
		if ap, ok := r.publisher.(AsyncPublisher); ok && len(r.cfg.Middlewares) == 0 {
			p = newAsyncPath(ap, r.cfg.PublishTimeout, r.window())
		} else {
			p = newDirectPath(r.publisher, r.cfg.Middlewares, r.cfg.PublishTimeout, r.window())
		}
		return p, func(context.Context) { p.close() }, nil
	}
	sub := newTableSubscriber()
	middlewares := append([]message.HandlerMiddleware{captureError}, r.cfg.Middlewares...)
	fwd, err := forwarder.NewForwarder(sub, slotPublisher{r.publisher}, quietRouterLogger{watermill.NewSlogLogger(r.cfg.Logger)}, forwarder.Config{
		ForwarderTopic: r.driver.Table(),
		Middlewares:    middlewares,
		CloseTimeout:   r.cfg.ShutdownTimeout / 4,
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
	p := &forwarderPath{sub: sub, timeout: r.cfg.PublishTimeout, waiters: newPool(r.window())}
	stop := func(stopCtx context.Context) {
		p.close()
		closed := make(chan struct{})
		go func() {
			if err := fwd.Close(); err != nil {
				r.log.Warn("closing forwarder", "err", err)
			}
			<-fwdDone
			close(closed)
		}()
		select {
		case <-closed:
		case <-stopCtx.Done():
			r.log.Warn("forwarder still closing at the shutdown deadline; not waiting for it")
		}
	}
	return p, stop, nil
}

var errAborted = errors.New("outbox: relay stopped while the event was in flight")

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
