// Package bench implements `outbox bench`: for each database × broker cell
// it seeds a backlog and times its drain by real `outbox relay` processes,
// measures commit → broker latency under a steady trickle, and measures, in
// the same run, two baselines: Watermill's default SQL forwarder
// (watermill-sql v3) draining the same backlog to the same broker, and the
// broker's raw publish rate at the relay's concurrency.
//
// The relay runs as a child process so that its CPU time and memory can be
// read from /proc apart from the bench's own writer and subscriber.
package bench

import (
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxbroker"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// Cell is one database × broker combination to measure.
type Cell struct {
	// DBURL is the database URL as `outbox` takes it (postgres://,
	// mysql://).
	DBURL string
	// BrokerURL is the broker URL as `outbox` takes it (nats://, ...).
	BrokerURL string
}

// Target is an opened outbox on one table, as Config.Open returns it.
type Target struct {
	// Outbox writes and inspects events of the table.
	Outbox *outbox.Outbox
	// Driver is the table's driver; Driver.DB is used for the baselines
	// and for cleanup.
	Driver outboxdriver.Driver
	// Close releases the database handle.
	Close func()
}

// Baseline names for Config.Baselines.
const (
	// BaselineMinimal is the minimal hand-written relay (minimal.go).
	BaselineMinimal = "minimal"
	// BaselineForwarder is Watermill's default SQL forwarder.
	BaselineForwarder = "forwarder"
	// BaselineRaw is the broker's raw async publish rate.
	BaselineRaw = "raw"
	// BaselinePoll is the polling relay (PollCommand), measured as the
	// relay is: the baseline of a CDC relay (relay --mode cdc).
	BaselinePoll = "poll"
)

// Config configures Run. Zero fields take the defaults their comments give.
type Config struct {
	// Cells are the database × broker combinations, measured one after
	// the other. At least one is required.
	Cells []Cell

	// Reps is how many times each measurement is repeated, interleaved:
	// relay, minimal relay, forwarder, raw publish, then the relay again...
	// Zero means 1.
	Reps int

	// Events is the backlog size drained by the relay and by each
	// baseline. Zero means 10000.
	Events int

	// BatchSize is passed to the relay as --batch-size. Zero means the
	// relay's default.
	BatchSize int

	// Keys is how many distinct event keys the backlog cycles through.
	// Zero means 1000.
	Keys int

	// PayloadBytes is the size of each event's payload. Zero means 300.
	PayloadBytes int

	// Rate is the trickle's events per second for the latency phase. Zero
	// means 200.
	Rate int

	// Duration is how long the trickle lasts. Zero means 5s.
	Duration time.Duration

	// Idle is how long the relay's idle CPU is measured, between the drain
	// and the trickle. Zero means 2s; negative skips the measurement.
	Idle time.Duration

	// Relays, when above 1, adds a drain of a fresh backlog by that many
	// relay processes at once to every rep.
	Relays int

	// LargeEvents, when positive, adds to every rep a drain of a backlog
	// of that size by one relay, right after the Events drain, and reports
	// its rate divided by the Events drain's.
	LargeEvents int

	// Poison, when positive, replaces the drains by the poison scenario:
	// that many events (one per key) that the broker refuses on every
	// attempt, while other keys trickle at Rate for PoisonDuration. NATS
	// only (a subject outside the bench's stream).
	Poison int

	// PoisonDuration is the poison scenario's trickle length. Zero means
	// 10s.
	PoisonDuration time.Duration

	// Open opens the outbox table named table on the database at dbURL,
	// creating nothing. Required.
	Open func(ctx context.Context, dbURL, table string) (*Target, error)

	// RelayCommand returns the `outbox relay` command line (JSON logs on
	// stderr, at least at info level, with a "relay started" line) for one
	// relay process on table. Required.
	RelayCommand func(ctx context.Context, dbURL, brokerURL, table string, batchSize int) *exec.Cmd

	// PollCommand returns the command line of the polling relay, the poll
	// baseline. Required when Baselines has BaselinePoll.
	PollCommand func(ctx context.Context, dbURL, brokerURL, table string, batchSize int) *exec.Cmd

	// Prepare, when set, runs on every fresh table after its migration and
	// before it is seeded (a CDC bench creates the replication slot there,
	// so that the backlog reaches the relay through the log); its cleanup
	// runs before the table is dropped.
	Prepare func(ctx context.Context, t *Target) (cleanup func(), err error)

	// Settle, when set, runs after the one-relay drain and before the idle
	// measurement, and returns once the relay has no work left that the
	// drain did not wait for (a CDC relay still reads its own outcome
	// writes from the log after the last event was delivered), so that
	// the idle CPU is that of an idle relay.
	Settle func(ctx context.Context, t *Target) error

	// MinimalCommand returns the command line of the minimal-relay
	// baseline's process on table (see MinimalRelay). Required unless
	// the minimal baseline is skipped.
	MinimalCommand func(ctx context.Context, dbURL, brokerURL, table string) *exec.Cmd

	// NoBaselines skips every baseline.
	NoBaselines bool

	// Baselines picks the baselines (BaselineMinimal, BaselineForwarder,
	// BaselineRaw). Nil means all three.
	Baselines []string

	// InFlight is how many publishes the raw baseline keeps in flight.
	// Zero means as many as the relay: the "max_in_flight" field of its
	// "relay started" log line when it logs one, else its batch_size ×
	// concurrency, at most Keys.
	InFlight int

	// RelayFlags are the extra flags RelayCommand gives every relay, for
	// the report only.
	RelayFlags []string

	// CommandLine is the bench's own command line, for the report only.
	CommandLine string

	// Progress receives one line per phase. Nil discards them.
	Progress io.Writer
}

func (c Config) withDefaults() Config {
	c.Reps = max(c.Reps, 1)
	c.Events = cmp.Or(c.Events, 10000)
	c.Keys = cmp.Or(c.Keys, 1000)
	c.PayloadBytes = cmp.Or(c.PayloadBytes, 300)
	c.Rate = cmp.Or(c.Rate, 200)
	c.Duration = cmp.Or(c.Duration, 5*time.Second)
	c.Idle = cmp.Or(c.Idle, 2*time.Second)
	c.Relays = max(c.Relays, 1)
	c.PoisonDuration = cmp.Or(c.PoisonDuration, 10*time.Second)
	if c.Baselines == nil {
		c.Baselines = []string{BaselineMinimal, BaselineForwarder, BaselineRaw}
	}
	if c.NoBaselines || c.Poison > 0 {
		c.Baselines = []string{}
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	return c
}

func (c Config) validate() error {
	switch {
	case len(c.Cells) == 0:
		return errors.New("bench: invalid config: Cells is empty")
	case c.Reps > 100:
		return fmt.Errorf("bench: invalid config: Reps %d out of range 1..100", c.Reps)
	case c.Events < 1:
		return fmt.Errorf("bench: invalid config: Events %d must be positive", c.Events)
	case c.BatchSize < 0 || c.BatchSize > 10000:
		return fmt.Errorf("bench: invalid config: BatchSize %d out of range 0..10000", c.BatchSize)
	case c.Keys < 1:
		return fmt.Errorf("bench: invalid config: Keys %d must be positive", c.Keys)
	case c.PayloadBytes < 0:
		return fmt.Errorf("bench: invalid config: PayloadBytes %d must not be negative", c.PayloadBytes)
	case c.Rate < 1 || c.Rate > 100000:
		return fmt.Errorf("bench: invalid config: Rate %d out of range 1..100000", c.Rate)
	case c.Duration < 0 || c.PoisonDuration < 0:
		return fmt.Errorf("bench: invalid config: Duration %s and PoisonDuration %s must not be negative", c.Duration, c.PoisonDuration)
	case c.InFlight < 0 || c.LargeEvents < 0 || c.Poison < 0:
		return errors.New("bench: invalid config: InFlight, LargeEvents and Poison must not be negative")
	case c.Open == nil || c.RelayCommand == nil:
		return errors.New("bench: invalid config: Open and RelayCommand are required")
	case c.wants(BaselineMinimal) && c.MinimalCommand == nil:
		return errors.New("bench: invalid config: MinimalCommand is required for the minimal baseline")
	case c.wants(BaselinePoll) && c.PollCommand == nil:
		return errors.New("bench: invalid config: PollCommand is required for the poll baseline")
	}
	for _, b := range c.Baselines {
		if b != BaselineMinimal && b != BaselineForwarder && b != BaselineRaw && b != BaselinePoll {
			return fmt.Errorf("bench: invalid config: unknown baseline %q (want %s, %s, %s or %s)", b, BaselineMinimal, BaselineForwarder, BaselineRaw, BaselinePoll)
		}
	}
	return nil
}

func (c Config) wants(baseline string) bool { return slices.Contains(c.Baselines, baseline) }

// Run measures every cell and returns the report. It stops at the first
// cell that fails, returning the cells measured so far with the error.
// Everything it creates (tables, streams, processes) is removed before it
// returns, also on error.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	rep := &Report{
		Machine:     Machine{CPUs: runtime.NumCPU(), OS: runtime.GOOS, Arch: runtime.GOARCH, Go: runtime.Version()},
		Reps:        cfg.Reps,
		CommandLine: cfg.CommandLine,
		Settings: Settings{
			Events: cfg.Events, BatchSize: cfg.BatchSize, Keys: cfg.Keys, PayloadBytes: cfg.PayloadBytes,
			Rate: cfg.Rate, TrickleSeconds: cfg.Duration.Seconds(), Relays: cfg.Relays, RelayFlags: cfg.RelayFlags,
			Baselines: cfg.Baselines, LargeEvents: cfg.LargeEvents, Poison: cfg.Poison, PoisonSeconds: cfg.PoisonDuration.Seconds(),
		},
	}
	if cfg.Poison == 0 {
		rep.Settings.PoisonSeconds = 0
	}
	start := time.Now()
	for _, cell := range cfg.Cells {
		r, err := runCell(ctx, cfg, cell, start)
		if err != nil {
			return rep, fmt.Errorf("%s × %s: %w", outboxbroker.Redact(cell.DBURL), outboxbroker.Redact(cell.BrokerURL), err)
		}
		if rep.RelaySettings == nil {
			rep.RelaySettings = r.RelaySettings
		}
		rep.Cells = append(rep.Cells, *r)
	}
	rep.ElapsedSeconds = time.Since(start).Seconds()
	return rep, nil
}

// run is the state of one cell's measurement.
type run struct {
	cfg       Config
	cell      Cell
	id        string // short random id naming this run's tables, topics, stream
	dialect   string
	relayURL  string // cell.DBURL tagged with an application name (PostgreSQL)
	appName   string
	brokerURL string   // cell.BrokerURL with this run's stream (NATS)
	scheme    string   // the broker URL's scheme
	prefix    string   // topic prefix: every topic of the run starts with it
	poisonTo  string   // a topic the broker refuses (poison scenario)
	purge     func()   // empties the run's stream or topics between reps
	topics    []string // topics used since the last purge (AMQP, Redis)
	settings  map[string]any
	repN      int // the rep being measured
	broker    *outboxbroker.Broker
	progress  func(format string, args ...any)
	cleanups  []func()
}

func runCell(ctx context.Context, cfg Config, cell Cell, start time.Time) (rep *CellReport, err error) {
	r := &run{cfg: cfg, cell: cell, id: randomID()}
	r.progress = func(format string, args ...any) {
		fmt.Fprintf(cfg.Progress, "bench: %6.1fs rep %d/%d: "+format+"\n", append([]any{time.Since(start).Seconds(), r.repN, cfg.Reps}, args...)...)
	}
	defer func() {
		for i := len(r.cleanups) - 1; i >= 0; i-- {
			r.cleanups[i]()
		}
	}()
	u, err := url.Parse(cell.DBURL)
	if err != nil {
		return nil, errors.New("database URL is not a URL")
	}
	r.dialect = u.Scheme
	r.relayURL = cell.DBURL
	if r.dialect == "postgres" || r.dialect == "postgresql" {
		r.dialect = "postgres"
		// The relay's own database sessions are found by this name in
		// pg_stat_activity, so their backends' CPU can be read from /proc.
		r.appName = "outboxbench_relay_" + r.id
		q := u.Query()
		if !q.Has("application_name") {
			q.Set("application_name", r.appName)
			u.RawQuery = q.Encode()
			r.relayURL = u.String()
		}
	}
	if err := r.prepareBroker(ctx); err != nil {
		return nil, err
	}
	if cfg.Poison > 0 && r.poisonTo == "" {
		return nil, fmt.Errorf("the poison scenario needs a broker that refuses a topic (nats://: a subject outside the bench's stream); %s has none", r.scheme)
	}
	r.broker, err = outboxbroker.Open(ctx, r.brokerURL, outboxbroker.Options{})
	if err != nil {
		return nil, fmt.Errorf("open broker: %w", err)
	}
	r.cleanups = append(r.cleanups, func() { _ = r.broker.Close() })
	if r.broker.Subscriber == nil {
		return nil, errors.New("the broker has no subscriber: the latency phase needs one")
	}

	rep = &CellReport{ID: r.id, Database: r.dialect, Broker: r.scheme,
		DBURL: outboxbroker.Redact(cell.DBURL), BrokerURL: outboxbroker.Redact(cell.BrokerURL)}
	for n := 1; n <= cfg.Reps; n++ {
		rr, err := r.rep(ctx, n)
		if err != nil {
			return nil, fmt.Errorf("rep %d: %w", n, err)
		}
		rep.PerRep = append(rep.PerRep, *rr)
	}
	rep.RelaySettings = r.settings
	rep.summarize()
	return rep, nil
}

// rep runs one repetition: the relay's drain, idle and trickle, then each
// baseline, in that order (or the poison scenario alone).
func (r *run) rep(ctx context.Context, n int) (*Rep, error) {
	rr := &Rep{Rep: n}
	r.repN = n
	if r.purge != nil {
		r.purge()
	}
	tag := func(name string) string { return r.topic(name + strconv.Itoa(n)) }
	if r.cfg.Poison > 0 {
		p, err := r.poison(ctx, n, tag("trickle"))
		rr.Poison = p
		return rr, err
	}
	if err := r.drainAndLatency(ctx, n, tag("drain"), tag("latency"), rr); err != nil {
		return nil, err
	}
	if r.cfg.LargeEvents > 0 {
		d, err := r.relayDrain(ctx, fmt.Sprintf("_l%d", n), tag("large"), r.cfg.LargeEvents, 1)
		if err != nil {
			return nil, fmt.Errorf("large backlog: %w", err)
		}
		rr.Large = d
	}
	if r.cfg.Relays > 1 {
		d, err := r.relayDrain(ctx, fmt.Sprintf("_m%d", n), tag("multi"), r.cfg.Events, r.cfg.Relays)
		if err != nil {
			return nil, err
		}
		rr.DrainMulti = d
	}
	if r.cfg.wants(BaselinePoll) {
		start := func(table string) ([]*relayProc, time.Time, error) {
			return r.startProcs(ctx, []*exec.Cmd{r.cfg.PollCommand(ctx, r.relayURL, r.brokerURL, table, r.cfg.BatchSize)})
		}
		d, err := r.seededDrain(ctx, fmt.Sprintf("_p%d", n), tag("poll"), r.cfg.Events, "the polling relay", start, nil)
		if err != nil {
			return nil, fmt.Errorf("polling relay baseline: %w", err)
		}
		rr.PollRelay = d
	}
	if r.cfg.wants(BaselineMinimal) {
		d, err := r.minimalDrain(ctx, n, tag("minimal"))
		if err != nil {
			return nil, fmt.Errorf("minimal relay baseline: %w", err)
		}
		rr.MinimalRelay = d
	}
	if r.cfg.wants(BaselineForwarder) {
		f, err := r.watermillForwarder(ctx, n, tag("forwarded"))
		if err != nil {
			return nil, fmt.Errorf("watermill forwarder baseline: %w", err)
		}
		rr.WatermillForwarder = f
	}
	if r.cfg.wants(BaselineRaw) {
		raw, err := r.rawBroker(ctx, tag("raw"))
		if err != nil {
			return nil, fmt.Errorf("raw broker baseline: %w", err)
		}
		rr.RawAsync = raw
	}
	rate := rr.Drain.EventsPerSec
	if rr.MinimalRelay != nil {
		rr.Ratios.VsMinimalRelay = ratio(rate, rr.MinimalRelay.EventsPerSec)
	}
	if rr.PollRelay != nil {
		rr.Ratios.VsPollRelay = ratio(rate, rr.PollRelay.EventsPerSec)
	}
	if rr.WatermillForwarder != nil {
		rr.Ratios.VsForwarder = ratio(rate, rr.WatermillForwarder.EventsPerSec)
	}
	if rr.RawAsync != nil {
		rr.Ratios.VsRawAsync = ratio(rate, rr.RawAsync.EventsPerSec)
	}
	if rr.Large != nil {
		rr.Ratios.LargeVsEvents = ratio(rr.Large.EventsPerSec, rate)
	}
	return rr, nil
}

func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

func randomID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// openTable opens and migrates a fresh table. done drops it and closes
// its handle (also run at the end of the cell if not called before).
func (r *run) openTable(ctx context.Context, suffix string) (t *Target, table string, done func(), err error) {
	table = "outboxbench_" + r.id + suffix
	t, err = r.cfg.Open(ctx, r.cell.DBURL, table)
	if err != nil {
		return nil, "", nil, err
	}
	var once sync.Once
	done = func() {
		once.Do(func() {
			dropTables(r.dialect, t.Driver.DB(), table, table+"_migrations", table+"_relay_lock", table+"_inbox", table+"_cdc_state", table+"_acks")
			if r.dialect == "postgres" {
				// Migration 4's publication (PostgreSQL's CDC relay).
				_, _ = t.Driver.DB().Exec(`DROP PUBLICATION IF EXISTS "` + table + `_pub"`)
			}
			t.Close()
		})
	}
	r.cleanups = append(r.cleanups, done)
	if err := t.Outbox.Migrate(ctx); err != nil {
		done()
		return nil, "", nil, fmt.Errorf("migrate %s: %w", table, err)
	}
	if r.cfg.Prepare != nil {
		cleanup, err := r.cfg.Prepare(ctx, t)
		if err != nil {
			done()
			return nil, "", nil, fmt.Errorf("prepare %s: %w", table, err)
		}
		drop := done
		var once sync.Once
		done = func() { once.Do(func() { cleanup(); drop() }) }
		r.cleanups = append(r.cleanups, done)
	}
	return t, table, done, nil
}

// analyze refreshes the planner statistics of a freshly seeded table, as
// autovacuum would have for a backlog that built up over time: without
// them PostgreSQL plans a claim on a just-filled table as on an empty one
// (a bitmap scan and a sort of every pending row per claim instead of an
// ordered index scan), and autovacuum's own ANALYZE would land at a random
// point of the drain. The relay and the minimal relay get the same.
func analyze(ctx context.Context, dialect string, db *sql.DB, table string) error {
	q := `ANALYZE "` + table + `"`
	if dialect == "mysql" {
		q = "ANALYZE TABLE `" + table + "`"
	}
	rows, err := db.QueryContext(ctx, q) // MySQL returns a result set
	if err != nil {
		return err
	}
	return rows.Close()
}

// dropTables removes the bench's own tables (names this package generated,
// never user input).
func dropTables(dialect string, db *sql.DB, tables ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, t := range tables {
		q := `"` + t + `"`
		if dialect == "mysql" {
			q = "`" + t + "`"
		}
		_, _ = db.ExecContext(ctx, "DROP TABLE IF EXISTS "+q)
	}
}

// event returns the i-th bench event for topic.
func (r *run) event(topic string, i int, payload []byte) *outbox.Event {
	return &outbox.Event{Type: "bench.event", Topic: topic, Key: fmt.Sprintf("key-%d", i%r.cfg.Keys), Payload: payload}
}

func (r *run) payload() []byte {
	p := make([]byte, r.cfg.PayloadBytes)
	for i := range p {
		p[i] = 'a' + byte(i%26)
	}
	return p
}

// seed inserts n events for topic, 1000 per transaction.
func (r *run) seed(ctx context.Context, t *Target, topic string, n int) error {
	payload := r.payload()
	db := t.Driver.DB()
	for start := 0; start < n; start += 1000 {
		events := make([]*outbox.Event, 0, 1000)
		for i := start; i < min(start+1000, n); i++ {
			events = append(events, r.event(topic, i, payload))
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if err := t.Outbox.Insert(ctx, tx, events...); err != nil {
			_ = tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
}

// startRelays starts n relay processes on table and returns them with the
// time the first one started claiming.
func (r *run) startRelays(ctx context.Context, table string, n int) ([]*relayProc, time.Time, error) {
	cmds := make([]*exec.Cmd, n)
	for i := range cmds {
		cmds[i] = r.cfg.RelayCommand(ctx, r.relayURL, r.brokerURL, table, r.cfg.BatchSize)
	}
	procs, first, err := r.startProcs(ctx, cmds)
	if err == nil && r.settings == nil {
		r.settings = procs[0].settings()
	}
	return procs, first, err
}

// startProcs starts relay-like processes (a "relay started" JSON log line
// on stderr once they claim) and returns them with the time the first one
// announced itself. They are stopped at the end of the cell at the latest.
func (r *run) startProcs(ctx context.Context, cmds []*exec.Cmd) ([]*relayProc, time.Time, error) {
	var procs []*relayProc
	var first time.Time
	for _, cmd := range cmds {
		p, at, err := startRelay(ctx, cmd)
		if err != nil {
			stopAll(procs)
			return nil, time.Time{}, err
		}
		procs = append(procs, p)
		if first.IsZero() {
			first = at
		}
	}
	r.cleanups = append(r.cleanups, func() { stopAll(procs) })
	return procs, first, nil
}

func stopAll(procs []*relayProc) {
	for _, p := range procs {
		p.stop()
	}
}

// waitDrained polls until no event of the table is pending, and returns
// when it saw that.
func (r *run) waitDrained(ctx context.Context, t *Target, procs []*relayProc, n int) (time.Time, error) {
	deadline := time.Now().Add(2*time.Minute + time.Duration(n)*time.Second/200)
	for {
		page, err := t.Outbox.List(ctx, outbox.ListFilter{Status: outbox.StatusPending, Limit: 1})
		if err != nil {
			return time.Time{}, err
		}
		if len(page.Events) == 0 {
			return time.Now(), nil
		}
		for _, p := range procs {
			if err := p.alive(); err != nil {
				return time.Time{}, err
			}
		}
		if time.Now().After(deadline) {
			st, _ := t.Outbox.Stats(ctx)
			pending := int64(-1)
			if st != nil {
				pending = st.Pending
			}
			return time.Time{}, fmt.Errorf("backlog not drained in time (%d of %d pending)", pending, n)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// dbPIDs returns the database server processes whose CPU the bench reads,
// and what they are: for PostgreSQL the backends serving the relay's
// sessions (found by application name), for MySQL/MariaDB the whole server.
func (r *run) dbPIDs(ctx context.Context, db *sql.DB) ([]int, string) {
	switch r.dialect {
	case "postgres":
		rows, err := db.QueryContext(ctx, "SELECT pid FROM pg_stat_activity WHERE application_name = $1", r.appName)
		if err != nil {
			return nil, ""
		}
		defer rows.Close()
		var pids []int
		for rows.Next() {
			var pid int
			if rows.Scan(&pid) == nil {
				pids = append(pids, pid)
			}
		}
		return pids, "PostgreSQL backends of the relay's sessions"
	case "mysql":
		return procsNamed("mariadbd", "mysqld"), "whole MySQL/MariaDB server (includes other clients' load)"
	}
	return nil, ""
}

// procMeter samples the relay processes and the database's processes.
type procMeter struct {
	r      *run
	db     *sql.DB
	procs  []*relayProc
	relay  cpuSample
	dbs    cpuSample
	dbWhat string
}

func (r *run) meter(ctx context.Context, db *sql.DB, procs []*relayProc) *procMeter {
	m := &procMeter{r: r, db: db, procs: procs}
	m.reset(ctx)
	return m
}

func (m *procMeter) relayPIDs() []int {
	pids := make([]int, len(m.procs))
	for i, p := range m.procs {
		pids[i] = p.pid()
	}
	return pids
}

func (m *procMeter) reset(ctx context.Context) {
	m.relay = sampleCPU(m.relayPIDs())
	var pids []int
	pids, m.dbWhat = m.r.dbPIDs(ctx, m.db)
	m.dbs = sampleCPU(pids)
}

// read returns the CPU used since the last reset, in percent of one core:
// the relays' (summed) and, when readable, the database's.
func (m *procMeter) read(ctx context.Context) (relay float64, db *float64, dbWhat string) {
	relay, _ = cpuPercent(m.relay, sampleCPU(m.relayPIDs()))
	pids, _ := m.r.dbPIDs(ctx, m.db)
	if v, ok := cpuPercent(m.dbs, sampleCPU(pids)); ok {
		db = &v
		dbWhat = m.dbWhat
	}
	return relay, db, dbWhat
}

func (m *procMeter) peakRSS() float64 {
	var sum int64
	for _, p := range m.procs {
		if v, err := peakRSS(p.pid()); err == nil {
			sum += v
		}
	}
	return float64(sum) / (1 << 20)
}

// drainAndLatency runs the one-relay drain, the idle measurement and the
// latency trickle on one table with one relay process.
func (r *run) drainAndLatency(ctx context.Context, rep int, drainTopic, latencyTopic string, rr *Rep) error {
	start := func(table string) ([]*relayProc, time.Time, error) { return r.startRelays(ctx, table, 1) }
	d, err := r.seededDrain(ctx, fmt.Sprintf("_r%d", rep), drainTopic, r.cfg.Events, "1 relay", start,
		func(t *Target, m *procMeter) error {
			if r.cfg.Idle > 0 {
				if r.cfg.Settle != nil {
					r.progress("%s × %s: waiting for the relay to settle", r.dialect, r.scheme)
					if err := r.cfg.Settle(ctx, t); err != nil {
						return err
					}
				}
				r.progress("%s × %s: idle relay for %s", r.dialect, r.scheme, r.cfg.Idle)
				m.reset(ctx)
				if err := sleep(ctx, r.cfg.Idle); err != nil {
					return err
				}
				cpu, _, _ := m.read(ctx)
				rr.IdleRelayCPUPercent = &cpu
			}
			r.progress("%s × %s: trickle at %d events/s for %s", r.dialect, r.scheme, r.cfg.Rate, r.cfg.Duration)
			m.reset(ctx)
			lat, err := r.latency(ctx, t, latencyTopic, r.cfg.Duration)
			if err != nil {
				return err
			}
			lat.RelayCPUPercent, lat.DBCPUPercent, lat.DBCPUScope = m.read(ctx)
			lat.RelayPeakRSSMB = m.peakRSS()
			rr.Latency = lat
			return nil
		})
	rr.Drain = d
	return err
}

// seededDrain seeds n events to topic in a fresh table (named with
// suffix), starts the processes start returns on it and times their drain,
// metered as one. then, when not nil, runs with the processes still up.
func (r *run) seededDrain(ctx context.Context, suffix, topic string, n int, who string,
	start func(table string) ([]*relayProc, time.Time, error), then func(*Target, *procMeter) error,
) (*Drain, error) {
	t, table, done, err := r.openTable(ctx, suffix)
	if err != nil {
		return nil, err
	}
	defer done()
	r.progress("%s × %s: seeding %d events for %s", r.dialect, r.scheme, n, who)
	if err := r.seed(ctx, t, topic, n); err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	if err := analyze(ctx, r.dialect, t.Driver.DB(), table); err != nil {
		return nil, fmt.Errorf("analyze %s: %w", table, err)
	}
	r.progress("%s × %s: draining %d events with %s", r.dialect, r.scheme, n, who)
	procs, began, err := start(table)
	if err != nil {
		return nil, err
	}
	defer stopAll(procs)
	m := r.meter(ctx, t.Driver.DB(), procs)
	end, err := r.waitDrained(ctx, t, procs, n)
	if err != nil {
		return nil, err
	}
	d := r.drainReport(ctx, m, len(procs), n, end.Sub(began))
	if then != nil {
		return &d, then(t, m)
	}
	return &d, nil
}

func (r *run) drainReport(ctx context.Context, m *procMeter, relays, n int, d time.Duration) Drain {
	cpu, db, what := m.read(ctx)
	dr := Drain{
		Relays: relays, Events: n, Seconds: d.Seconds(), EventsPerSec: float64(n) / d.Seconds(),
		RelayCPUPercent: cpu, RelayPeakRSSMB: m.peakRSS(), DBCPUPercent: db, DBCPUScope: what,
	}
	// CPU percent of one core × seconds = CPU seconds; per event in µs.
	dr.RelayCPUMicrosPerEvent = cpu / 100 * d.Seconds() / float64(n) * 1e6
	return dr
}

// relayDrain drains a fresh backlog of n events with k relay processes.
func (r *run) relayDrain(ctx context.Context, suffix, topic string, n, k int) (*Drain, error) {
	start := func(table string) ([]*relayProc, time.Time, error) { return r.startRelays(ctx, table, k) }
	return r.seededDrain(ctx, suffix, topic, n, fmt.Sprintf("%d relay(s)", k), start, nil)
}

// minimalDrain drains a fresh backlog with the minimal-relay baseline's
// process, measured exactly as the relay's drain.
func (r *run) minimalDrain(ctx context.Context, rep int, topic string) (*Drain, error) {
	start := func(table string) ([]*relayProc, time.Time, error) {
		return r.startProcs(ctx, []*exec.Cmd{r.cfg.MinimalCommand(ctx, r.relayURL, r.brokerURL, table)})
	}
	return r.seededDrain(ctx, fmt.Sprintf("_n%d", rep), topic, r.cfg.Events, "the minimal relay", start, nil)
}

// inFlight returns how many publishes the raw baseline keeps in flight,
// and where that number comes from.
func (r *run) inFlight() (int, string) {
	if r.cfg.InFlight > 0 {
		return r.cfg.InFlight, "--in-flight"
	}
	num := func(key string) int {
		if v, ok := r.settings[key].(float64); ok && v >= 1 && v <= 1e6 {
			return int(v)
		}
		return 0
	}
	for _, k := range []string{"max_in_flight", "in_flight"} {
		if v := num(k); v > 0 {
			return v, "the relay's " + k + " (its \"relay started\" log line)"
		}
	}
	batch, src := num("batch_size"), "the relay's batch_size"
	if batch == 0 {
		batch, src = cmp.Or(r.cfg.BatchSize, 100), "--batch-size (the relay logged none)"
	}
	conc, csrc := num("concurrency"), "its concurrency"
	if conc == 0 {
		conc, csrc = cmp.Or(flagInt(r.cfg.RelayFlags, "concurrency"), 1), "its --concurrency flag (1 if none; the relay logged none)"
	}
	return min(batch*conc, r.cfg.Keys), src + " × " + csrc + ", at most the number of keys"
}

// flagInt returns the integer value of --name in flags (--name=v or
// --name v), zero when absent or not an integer.
func flagInt(flags []string, name string) int {
	for i, f := range flags {
		var v string
		if after, ok := strings.CutPrefix(f, "--"+name+"="); ok {
			v = after
		} else if f == "--"+name && i+1 < len(flags) {
			v = flags[i+1]
		} else {
			continue
		}
		n, _ := strconv.Atoi(v)
		return n
	}
	return 0
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
