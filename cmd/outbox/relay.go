package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/outboxkit/outboxkit/drivers/postgres"
	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxbroker"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// defaultMetricsAddr is where --metrics listens: loopback only.
const defaultMetricsAddr = "127.0.0.1:9464"

// relayGCPercent is the garbage collector's GOGC of `outbox relay` when the
// GOGC environment variable does not set one. A draining relay allocates
// about 5 KB per event (rows, messages, broker client buffers), nearly all
// short-lived, and with Go's default of 100 the collector and the scavenger
// took a quarter of its CPU. At 300, on a 100k PostgreSQL -> NATS drain:
// relay CPU per event 32 -> 23.5 µs, peak RSS 39 -> 51 MiB (docs/performance.md).
const relayGCPercent = 300

// setRelayGC applies relayGCPercent unless GOGC is set, and returns the
// GOGC in effect, for the log.
func setRelayGC(getenv func(string) string) string {
	if v := getenv("GOGC"); v != "" {
		return v
	}
	debug.SetGCPercent(relayGCPercent)
	return strconv.Itoa(relayGCPercent)
}

func (a *app) relayCommand() *cobra.Command {
	var (
		rc          relayConfig
		metrics     bool
		metricsAddr string
		logLevel    string
		id          string
		notify      bool
	)
	cmd := &cobra.Command{
		Use:   "relay",
		Short: "Run the relay: publish committed events to the broker until SIGTERM",
		Long: `relay runs the outbox relay as a daemon or sidecar. It claims committed events,
publishes them to the broker given by --broker-url and records each outcome.
SIGTERM or SIGINT stops claiming, waits for in-flight publishes, records them
and exits 0.

With --metrics (or --metrics-addr) it serves Prometheus metrics on /metrics,
liveness on /healthz and readiness (database and broker reachable) on /readyz.
The default address is loopback only (` + defaultMetricsAddr + `).`,
		Example: `  outbox relay --db-url postgres://app@db/app --broker-url nats://nats:4222
  OUTBOX_DB_URL=postgres://app@db/app OUTBOX_BROKER_URL=kafka://k1:9092 outbox relay --metrics
  outbox relay --config /etc/outbox.yaml --metrics-addr 0.0.0.0:9464`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level, err := parseLevel(logLevel)
			if err != nil {
				return err
			}
			logger := slog.New(slog.NewJSONHandler(a.stderr, &slog.HandlerOptions{Level: level, ReplaceAttr: readableDurations}))
			logger.Debug("garbage collector", "gogc", setRelayGC(os.Getenv))
			if cmd.Flags().Changed("metrics-addr") || metrics {
				metricsAddr = cmp.Or(metricsAddr, a.cfg.MetricsAddr, defaultMetricsAddr)
			} else {
				metricsAddr = a.cfg.MetricsAddr
			}
			a.cfg.Notify = a.cfg.Notify || notify
			merged := mergeRelay(rc, a.cfg.Relay)
			a.deleteDelivered = merged.DeleteDelivered
			switch merged.Mode {
			case "", "poll":
			case "cdc":
				a.cdc, a.cdcSlot = true, merged.Slot
			default:
				return usageError("--mode %q: want poll or cdc", merged.Mode)
			}
			if merged.Slot != "" && !a.cdc {
				return usageError("--slot: only with --mode cdc")
			}
			return a.runRelay(cmd.Context(), logger, merged, id, metricsAddr)
		},
	}
	f := cmd.Flags()
	f.IntVar(&rc.BatchSize, "batch-size", 0, "events per claim (default 500)")
	f.IntVar(&rc.Concurrency, "concurrency", 0, "batches open at once (the next claim overlaps the publishes of the open ones); a crash may duplicate this many batches (default 2)")
	f.DurationVar(&rc.PollInterval, "poll-interval", 0, "longest sleep when nothing is ready (default 200ms)")
	f.DurationVar(&rc.MinPoll, "min-poll-interval", 0, "first sleep after activity, doubling up to --poll-interval (default 10ms)")
	f.IntVar(&rc.MaxAttempts, "max-attempts", 0, "failed publishes before an event is dead (default 30)")
	f.DurationVar(&rc.LeaseDuration, "lease", 0, "lease of claimed events, extended while working (default 30s)")
	f.DurationVar(&rc.PublishTimeout, "publish-timeout", 0, "broker acknowledgement timeout (default 15s)")
	f.DurationVar(&rc.BackoffMin, "backoff-min", 0, "delay after the first failure (default 1s)")
	f.DurationVar(&rc.BackoffMax, "backoff-max", 0, "retry delay cap (default 5m)")
	f.DurationVar(&rc.ShutdownTimeout, "shutdown-timeout", 0, "after SIGTERM, how long to wait for in-flight publishes and their outcomes (default 10s; a second signal exits at once)")
	f.BoolVar(&rc.DeleteDelivered, "delete-delivered", false, "PostgreSQL: delete each event once delivered instead of keeping it as history (much less database work; list/show/status then see no delivered events)")
	f.StringVar(&rc.Publish, "publish", "", "publish path: direct (event messages through the middlewares to the broker, pipelined) or forwarder (Watermill's forwarder and envelope: same messages, more CPU) (default direct)")
	f.DurationVar(&rc.AckSweepInterval, "ack-sweep-interval", 0, "how often to resend events whose business acknowledgment is overdue; negative: no sweep in this relay (default 1s)")
	f.StringVar(&rc.Mode, "mode", "", "poll (claim events from the table) or cdc (PostgreSQL: stream them from a logical replication slot; needs wal_level=logical, see docs/cdc.md) (default poll)")
	f.StringVar(&rc.Slot, "slot", "", "--mode cdc: replication slot name; relays on one slot are hot standbys of each other (default <table>_slot)")
	f.BoolVar(&metrics, "metrics", false, "serve /metrics, /healthz, /readyz on "+defaultMetricsAddr)
	f.StringVar(&metricsAddr, "metrics-addr", "", "serve /metrics, /healthz, /readyz on this address")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&id, "id", "", "relay id in leases and logs (default host-pid-random)")
	f.BoolVar(&notify, "notify", false, "PostgreSQL: LISTEN for insert notifications (writers must use postgres.Config.NotifyDSN) instead of relying on polling")
	return cmd
}

// mergeRelay gives flags precedence over the YAML file.
func mergeRelay(flags, file relayConfig) relayConfig {
	return relayConfig{
		BatchSize:        cmp.Or(flags.BatchSize, file.BatchSize),
		Concurrency:      cmp.Or(flags.Concurrency, file.Concurrency),
		PollInterval:     cmp.Or(flags.PollInterval, file.PollInterval),
		MinPoll:          cmp.Or(flags.MinPoll, file.MinPoll),
		MaxAttempts:      cmp.Or(flags.MaxAttempts, file.MaxAttempts),
		LeaseDuration:    cmp.Or(flags.LeaseDuration, file.LeaseDuration),
		PublishTimeout:   cmp.Or(flags.PublishTimeout, file.PublishTimeout),
		BackoffMin:       cmp.Or(flags.BackoffMin, file.BackoffMin),
		BackoffMax:       cmp.Or(flags.BackoffMax, file.BackoffMax),
		ShutdownTimeout:  cmp.Or(flags.ShutdownTimeout, file.ShutdownTimeout),
		Publish:          cmp.Or(flags.Publish, file.Publish),
		DeleteDelivered:  flags.DeleteDelivered || file.DeleteDelivered,
		Mode:             cmp.Or(flags.Mode, file.Mode),
		Slot:             cmp.Or(flags.Slot, file.Slot),
		AckSweepInterval: cmp.Or(flags.AckSweepInterval, file.AckSweepInterval),
	}
}

// readableDurations logs durations as "1.5s" instead of nanoseconds, also
// Watermill's and the relay's own.
func readableDurations(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, usageError("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

func (a *app) runRelay(ctx context.Context, logger *slog.Logger, rc relayConfig, id, metricsAddr string) error {
	if a.cfg.BrokerURL == "" {
		return usageError("no broker: set --broker-url or OUTBOX_BROKER_URL (schemes: %s)", strings.Join(outboxbroker.Schemes(), ", "))
	}
	if _, err := url.Parse(a.cfg.BrokerURL); err != nil {
		// url.Error repeats the raw URL, secrets included: keep its reason only.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return usageError("--broker-url %s: %v", outboxbroker.Redact(a.cfg.BrokerURL), err)
	}
	drv, ob, closeDB, err := a.openOutbox(ctx)
	if err != nil {
		return err
	}
	defer closeDB()
	broker, err := outboxbroker.Open(ctx, a.cfg.BrokerURL, outboxbroker.Options{Logger: logger})
	if err != nil {
		var pe *outboxbroker.ParamError
		if errors.Is(err, outboxbroker.ErrUnknownScheme) || errors.As(err, &pe) {
			return &codedError{exitUsage, fmt.Errorf("broker URL %s: %w", outboxbroker.Redact(a.cfg.BrokerURL), err)}
		}
		return fmt.Errorf("open broker %s: %w", outboxbroker.Redact(a.cfg.BrokerURL), err)
	}
	defer broker.Close()
	// Every broker fails here alike when it does not answer (a Redis client
	// connects lazily, so opening it proves nothing).
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = a.brokerHealthy(hctx, broker)
	cancel()
	if err != nil {
		return fmt.Errorf("broker %s: %w", outboxbroker.Redact(a.cfg.BrokerURL), err)
	}

	m := newRelayMetrics(tableName(drv))
	relay, err := outbox.NewRelay(drv, broker.Publisher, outbox.RelayConfig{
		ID: id, BatchSize: rc.BatchSize, Concurrency: rc.Concurrency, PollInterval: rc.PollInterval, MinPollInterval: rc.MinPoll, MaxAttempts: rc.MaxAttempts,
		LeaseDuration: rc.LeaseDuration, PublishTimeout: rc.PublishTimeout,
		BackoffMin: rc.BackoffMin, BackoffMax: rc.BackoffMax, ShutdownTimeout: rc.ShutdownTimeout, Publish: outbox.PublishPath(rc.Publish),
		AckSweepInterval: rc.AckSweepInterval,
		Observer:         m.observe, ClaimObserver: m.observeClaim, Logger: logger,
	})
	if err != nil {
		return &codedError{exitUsage, err}
	}
	logger.Info("relay starting", "db", outboxbroker.Redact(a.cfg.DBURL), "broker", outboxbroker.Redact(a.cfg.BrokerURL), "table", tableName(drv))

	if metricsAddr != "" {
		srv, err := a.serveMetrics(ctx, metricsAddr, m, drv, broker, logger)
		if err != nil {
			return err
		}
		defer srv.Close()
		go m.pollStats(ctx, ob.Stats, logger)
		if c, ok := drv.(*postgres.CDC); ok {
			go m.pollSlot(ctx, c.SlotStatus, logger)
		}
	}
	defer m.up.Set(0)
	// The stop is logged as soon as it begins, and always before the
	// process exits, even when the relay stops faster than the log runs.
	logged := make(chan struct{})
	stopLog := context.AfterFunc(ctx, func() {
		defer close(logged)
		logger.Info("stopping: finishing in-flight events (a second signal exits at once)",
			"cause", context.Cause(ctx).Error(), "shutdown_timeout", cmp.Or(rc.ShutdownTimeout, 10*time.Second))
	})
	err = relay.Run(ctx)
	if !stopLog() {
		<-logged
	}
	return err
}

// brokerHealthy asks the broker client itself (outboxbroker.CheckHealth: a
// NATS JetStream request, an AMQP channel, a Redis PING) and, for a broker
// without a health check, dials its address.
func (a *app) brokerHealthy(ctx context.Context, b *outboxbroker.Broker) error {
	err := outboxbroker.CheckHealth(ctx, a.cfg.BrokerURL, outboxbroker.Options{}, b)
	if errors.Is(err, outboxbroker.ErrNoHealthCheck) {
		return brokerReachable(ctx, a.cfg.BrokerURL)
	}
	return err
}

// brokerReachable dials the broker URL's host (a network-level check: the
// Watermill publisher interface has no ping). In-process brokers, such as
// memory://, are always reachable.
func brokerReachable(ctx context.Context, rawURL string) error {
	u, err := url.Parse(rawURL)
	port, networked := defaultPorts[u.Scheme]
	if err != nil || u.Host == "" || !networked {
		return nil
	}
	var d net.Dialer
	for _, host := range strings.Split(u.Host, ",") {
		if _, _, err := net.SplitHostPort(host); err != nil {
			host = net.JoinHostPort(host, port)
		}
		c, err := d.DialContext(ctx, "tcp", host)
		if err == nil {
			c.Close()
			return nil
		}
	}
	return fmt.Errorf("broker unreachable at %s", u.Host)
}

var defaultPorts = map[string]string{
	"nats": "4222", "kafka": "9092", "amqp": "5672", "amqps": "5671", "redis": "6379", "rediss": "6379",
}

// relayMetrics are the relay's Prometheus metrics, on their own registry.
// The table-wide gauges (pending, dead, oldest) carry a table label: every
// relay on a table exports the same values, so dashboards aggregate them
// with max by (table), never sum.
type relayMetrics struct {
	reg                            *prometheus.Registry
	table                          string
	published, failed, dead, retry *prometheus.CounterVec
	publishLatency, lag            *prometheus.HistogramVec
	pending, deadGauge, oldest     *prometheus.GaugeVec
	ackAwaiting, ackOldest         *prometheus.GaugeVec
	ackRejected, ackUnacknowledged *prometheus.GaugeVec
	claimErrors                    prometheus.Counter
	up                             prometheus.Gauge
	// CDC mode (--mode cdc): the replication slot.
	slotLagBytes, slotLagSeconds, slotRetained, slotSafe prometheus.Gauge
}

func newRelayMetrics(table string) *relayMetrics {
	reg := prometheus.NewRegistry()
	labels := []string{"topic", "type"}
	tableLabel := []string{"table"}
	m := &relayMetrics{
		reg:   reg,
		table: table,
		published: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "outbox_published_total",
			Help: "Events the broker acknowledged."}, labels),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "outbox_publish_failures_total",
			Help: "Failed publish attempts (each will be retried unless it made the event dead)."}, labels),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "outbox_dead_total",
			Help: "Events marked dead after MaxAttempts or as unreadable."}, labels),
		retry: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "outbox_retried_total",
			Help: "Publish attempts after the first (retries)."}, labels),
		publishLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "outbox_publish_duration_seconds",
			Help:    "Time from handing an event to the publishing path to the broker's acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"topic"}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "outbox_commit_to_publish_seconds",
			Help:    "Time from the event's creation (insert) to its acknowledged publish.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 20)}, []string{"topic"}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "outbox_pending_events",
			Help: "Events not yet delivered (polled every 15s; absent while the database cannot be read)."}, tableLabel),
		deadGauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "outbox_dead_events",
			Help: "Dead events waiting for an operator (polled every 15s; absent while the database cannot be read)."}, tableLabel),
		oldest: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "outbox_oldest_pending_age_seconds",
			Help: "Age of the oldest pending event (polled every 15s; absent while the database cannot be read)."}, tableLabel),
		ackAwaiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "outbox_ack_awaiting",
			Help: "Events inserted with AwaitAck whose receiver has not answered yet (polled every 15s)."}, tableLabel),
		ackOldest: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "outbox_ack_oldest_awaiting_seconds",
			Help: "Age of the oldest event awaiting its receiver's answer (polled every 15s)."}, tableLabel),
		ackRejected: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "outbox_ack_rejected",
			Help: "Events their receiver rejected (polled every 15s)."}, tableLabel),
		ackUnacknowledged: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "outbox_ack_unacknowledged",
			Help: "Events resent MaxResends times without an answer, waiting for an operator (polled every 15s)."}, tableLabel),
		claimErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "outbox_claim_errors_total",
			Help: "Claims that failed with a database error (the relay retries with backoff)."}),
		up: prometheus.NewGauge(prometheus.GaugeOpts{Name: "outbox_relay_up",
			Help: "1 while the relay runs and its last claim succeeded; 0 while claims fail (database down) or after it stopped."}),
	}
	slotGauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: prometheus.Labels{"table": table}})
	}
	m.slotLagBytes = slotGauge("outbox_cdc_slot_lag_bytes",
		"--mode cdc: WAL between the server's insert position and the slot's confirmed position (polled every 15s).")
	m.slotLagSeconds = slotGauge("outbox_cdc_slot_lag_seconds",
		"--mode cdc: the streaming connection's flush lag as the server measures it (pg_stat_replication.flush_lag; 0 when caught up).")
	m.slotRetained = slotGauge("outbox_cdc_retained_wal_bytes",
		"--mode cdc: WAL the slot keeps on the server (current position - restart_lsn). Alert well before max_slot_wal_keep_size.")
	m.slotSafe = slotGauge("outbox_cdc_slot_safe_wal_bytes",
		"--mode cdc: WAL that may still be written before the slot risks losing what it needs (pg_replication_slots.safe_wal_size; -1 when max_slot_wal_keep_size is unlimited).")
	reg.MustRegister(m.published, m.failed, m.dead, m.retry, m.publishLatency, m.lag, m.pending, m.deadGauge, m.oldest,
		m.ackAwaiting, m.ackOldest, m.ackRejected, m.ackUnacknowledged, m.claimErrors, m.up, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// maxLabelBytes bounds a label value taken from an event (topic, type): a
// stored row may hold anything, and a huge label bloats every scrape.
const maxLabelBytes = 128

// labelValue makes an event's field a safe Prometheus label value: valid
// UTF-8 (the client library panics on anything else) and at most
// maxLabelBytes long, cut on a rune boundary and marked with "...".
func labelValue(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= maxLabelBytes {
		return s
	}
	cut := maxLabelBytes - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// observe is the relay's Observer. The first outcome of a topic and type
// creates all its counters at zero, so rate() and increase() see a failure
// or death as a change from 0, not as a series appearing.
func (m *relayMetrics) observe(o outbox.Outcome) {
	topic, typ := labelValue(o.Topic), labelValue(o.Type)
	published := m.published.WithLabelValues(topic, typ)
	failed := m.failed.WithLabelValues(topic, typ)
	dead := m.dead.WithLabelValues(topic, typ)
	retry := m.retry.WithLabelValues(topic, typ)
	if o.Attempt > 1 {
		retry.Inc()
	}
	if o.Err == nil {
		published.Inc()
		m.publishLatency.WithLabelValues(topic).Observe(o.Duration.Seconds())
		m.lag.WithLabelValues(topic).Observe(time.Since(o.CreatedAt).Seconds())
		return
	}
	failed.Inc()
	if o.Dead {
		dead.Inc()
	}
}

// observeClaim is the relay's ClaimObserver: a failed claim counts as a
// database error and marks the relay down until a claim succeeds again.
func (m *relayMetrics) observeClaim(c outbox.ClaimOutcome) {
	if c.Err != nil {
		m.claimErrors.Inc()
		m.up.Set(0)
		return
	}
	m.up.Set(1)
}

// pollSlot sets the CDC slot gauges every 15s until ctx ends.
func (m *relayMetrics) pollSlot(ctx context.Context, read func(context.Context) (*postgres.SlotStatus, error), logger *slog.Logger) {
	m.reg.MustRegister(m.slotLagBytes, m.slotLagSeconds, m.slotRetained, m.slotSafe)
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	for {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		s, err := read(sctx)
		cancel()
		if err == nil {
			m.slotLagBytes.Set(float64(s.LagBytes))
			m.slotLagSeconds.Set(s.LagSeconds)
			m.slotRetained.Set(float64(s.RetainedBytes))
			m.slotSafe.Set(float64(s.SafeBytes))
		} else if ctx.Err() == nil {
			logger.Warn("reading the replication slot for metrics failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// stats is what pollStats reads: (*outbox.Outbox).Stats.
type stats func(context.Context) (*outbox.Stats, error)

func (m *relayMetrics) pollStats(ctx context.Context, read stats, logger *slog.Logger) {
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	for {
		m.updateStats(ctx, read, logger)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// updateStats sets the table-wide gauges, or removes them when the stats
// cannot be read: a frozen last value would say all is well.
func (m *relayMetrics) updateStats(ctx context.Context, read stats, logger *slog.Logger) {
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	s, err := read(sctx)
	cancel()
	if err != nil {
		m.pending.Reset()
		m.deadGauge.Reset()
		m.oldest.Reset()
		m.resetAck()
		if ctx.Err() == nil {
			logger.Warn("reading outbox stats for metrics failed", "err", err)
		}
		return
	}
	m.pending.WithLabelValues(m.table).Set(float64(s.Pending))
	m.deadGauge.WithLabelValues(m.table).Set(float64(s.Dead))
	m.oldest.WithLabelValues(m.table).Set(s.OldestPendingAge.Seconds())
	if s.Ack == nil {
		m.resetAck()
		return
	}
	m.ackAwaiting.WithLabelValues(m.table).Set(float64(s.Ack.Awaiting))
	m.ackOldest.WithLabelValues(m.table).Set(s.Ack.OldestAwaitingAge.Seconds())
	m.ackRejected.WithLabelValues(m.table).Set(float64(s.Ack.Rejected))
	m.ackUnacknowledged.WithLabelValues(m.table).Set(float64(s.Ack.Unacknowledged))
}

// resetAck removes the acknowledgment gauges (stats unreadable, or a driver
// without acknowledgments).
func (m *relayMetrics) resetAck() {
	m.ackAwaiting.Reset()
	m.ackOldest.Reset()
	m.ackRejected.Reset()
	m.ackUnacknowledged.Reset()
}

// serveMetrics serves /metrics, /healthz (process up) and /readyz (database
// reachable, table readable, broker answering), each readiness check
// within 3 s.
func (a *app) serveMetrics(ctx context.Context, addr string, m *relayMetrics, drv outboxdriver.Driver, broker *outboxbroker.Broker, logger *slog.Logger) (*http.Server, error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		rctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		if err := drv.DB().PingContext(rctx); err != nil {
			http.Error(w, "database unreachable: "+redactAll(err.Error()), http.StatusServiceUnavailable)
			return
		}
		if _, err := drv.EventStats(rctx, &outboxdriver.EventStatsParams{}); err != nil {
			http.Error(w, "outbox table: "+redactAll(err.Error()), http.StatusServiceUnavailable)
			return
		}
		if err := a.brokerHealthy(rctx, broker); err != nil {
			http.Error(w, "broker: "+redactAll(err.Error()), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, usageError("--metrics-addr %s: %v", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics server stopped", "err", err)
		}
	}()
	logger.Info("serving metrics and health", "addr", ln.Addr().String())
	return srv, nil
}
