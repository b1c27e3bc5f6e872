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

// Config configures Run. Zero fields take the defaults their comments give.
type Config struct {
	// Cells are the database × broker combinations, measured one after
	// the other. At least one is required.
	Cells []Cell

	// Events is the backlog size drained by the relay and by each
	// baseline. Zero means 10000.
	Events int

	// BatchSize is passed to the relay as --batch-size. Zero means the
	// relay's default (100).
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

	// Relays, when above 1, adds a second drain of a fresh backlog by that
	// many relay processes at once.
	Relays int

	// Open opens the outbox table named table on the database at dbURL,
	// creating nothing. Required.
	Open func(ctx context.Context, dbURL, table string) (*Target, error)

	// RelayCommand returns the `outbox relay` command line (JSON logs on
	// stderr, at least at info level) for one relay process on table.
	// Required.
	RelayCommand func(ctx context.Context, dbURL, brokerURL, table string, batchSize int) *exec.Cmd

	// NoBaselines skips the Watermill forwarder and raw broker baselines
	// (e.g. for a backlog the forwarder would take many minutes to drain).
	NoBaselines bool

	// RelayFlags are the extra flags RelayCommand gives every relay, for
	// the report only.
	RelayFlags []string

	// Progress receives one line per phase. Nil discards them.
	Progress io.Writer
}

func (c Config) withDefaults() Config {
	c.Events = cmp.Or(c.Events, 10000)
	c.Keys = cmp.Or(c.Keys, 1000)
	c.PayloadBytes = cmp.Or(c.PayloadBytes, 300)
	c.Rate = cmp.Or(c.Rate, 200)
	c.Duration = cmp.Or(c.Duration, 5*time.Second)
	c.Idle = cmp.Or(c.Idle, 2*time.Second)
	c.Relays = max(c.Relays, 1)
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	return c
}

func (c Config) validate() error {
	switch {
	case len(c.Cells) == 0:
		return errors.New("bench: invalid config: Cells is empty")
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
	case c.Duration < 0:
		return fmt.Errorf("bench: invalid config: Duration %s must not be negative", c.Duration)
	case c.Open == nil || c.RelayCommand == nil:
		return errors.New("bench: invalid config: Open and RelayCommand are required")
	}
	return nil
}

// relayBatch is the batch size the relay actually uses.
func (c Config) relayBatch() int { return cmp.Or(c.BatchSize, 100) }

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
		Machine: Machine{CPUs: runtime.NumCPU(), OS: runtime.GOOS, Arch: runtime.GOARCH, Go: runtime.Version()},
		Settings: Settings{
			Events: cfg.Events, BatchSize: cfg.relayBatch(), Keys: cfg.Keys, PayloadBytes: cfg.PayloadBytes,
			Rate: cfg.Rate, TrickleSeconds: cfg.Duration.Seconds(), Relays: cfg.Relays, RelayFlags: cfg.RelayFlags, NoBaselines: cfg.NoBaselines,
		},
	}
	for _, cell := range cfg.Cells {
		r, err := runCell(ctx, cfg, cell)
		if err != nil {
			return rep, fmt.Errorf("%s × %s: %w", outboxbroker.Redact(cell.DBURL), outboxbroker.Redact(cell.BrokerURL), err)
		}
		rep.Cells = append(rep.Cells, *r)
	}
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
	brokerURL string // cell.BrokerURL with this run's stream (NATS)
	topics    topics
	broker    *outboxbroker.Broker
	db        *sql.DB // the first table's handle, also used by the baselines
	progress  func(format string, args ...any)
	cleanups  []func()
}

func runCell(ctx context.Context, cfg Config, cell Cell) (rep *CellReport, err error) {
	r := &run{cfg: cfg, cell: cell, id: randomID()}
	r.progress = func(format string, args ...any) {
		fmt.Fprintf(cfg.Progress, "bench: "+format+"\n", args...)
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
	r.brokerURL, r.topics, err = r.prepareBroker()
	if err != nil {
		return nil, err
	}
	r.broker, err = outboxbroker.Open(ctx, r.brokerURL, outboxbroker.Options{})
	if err != nil {
		return nil, fmt.Errorf("open broker: %w", err)
	}
	r.cleanups = append(r.cleanups, func() { _ = r.broker.Close() })
	if r.broker.Subscriber == nil {
		return nil, errors.New("the broker has no subscriber: the latency phase needs one")
	}

	rep = &CellReport{ID: r.id, Database: r.dialect, Broker: brokerScheme(cell.BrokerURL),
		DBURL: outboxbroker.Redact(cell.DBURL), BrokerURL: outboxbroker.Redact(cell.BrokerURL)}

	// 1. Drain a backlog with one relay, then idle, then the trickle, with
	// the same relay process.
	if err := r.drainAndLatency(ctx, rep); err != nil {
		return nil, err
	}
	// 2. The same backlog drained by several relays at once.
	if cfg.Relays > 1 {
		d, err := r.drainMulti(ctx, cfg.Relays)
		if err != nil {
			return nil, err
		}
		rep.DrainMulti = d
	}
	// 3. Baselines on the same database and broker.
	if cfg.NoBaselines {
		return rep, nil
	}
	raw, err := r.rawBroker(ctx)
	if err != nil {
		return nil, fmt.Errorf("raw broker baseline: %w", err)
	}
	rep.Baselines.RawBroker = raw
	fwd, err := r.watermillForwarder(ctx)
	if err != nil {
		return nil, fmt.Errorf("watermill forwarder baseline: %w", err)
	}
	rep.Baselines.WatermillForwarder = fwd
	rep.Ratios = Ratios{
		VsWatermillForwarder: ratio(rep.Drain.EventsPerSec, fwd.EventsPerSec),
		VsRawBroker:          ratio(rep.Drain.EventsPerSec, raw.EventsPerSec),
	}
	return rep, nil
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

func brokerScheme(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.Scheme != "" {
		return u.Scheme
	}
	return "broker"
}

// openTable opens, migrates and registers the cleanup of a fresh table.
func (r *run) openTable(ctx context.Context, suffix string) (*Target, string, error) {
	table := "outboxbench_" + r.id + suffix
	t, err := r.cfg.Open(ctx, r.cell.DBURL, table)
	if err != nil {
		return nil, "", err
	}
	r.cleanups = append(r.cleanups, func() {
		dropTables(r.dialect, t.Driver.DB(), table, table+"_migrations", table+"_relay_lock", table+"_inbox")
		t.Close()
	})
	if err := t.Outbox.Migrate(ctx); err != nil {
		return nil, "", fmt.Errorf("migrate %s: %w", table, err)
	}
	if r.db == nil {
		r.db = t.Driver.DB()
	}
	return t, table, nil
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
	var procs []*relayProc
	var first time.Time
	for range n {
		cmd := r.cfg.RelayCommand(ctx, r.relayURL, r.brokerURL, table, r.cfg.BatchSize)
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
func (r *run) drainAndLatency(ctx context.Context, rep *CellReport) error {
	t, table, err := r.openTable(ctx, "")
	if err != nil {
		return err
	}
	n := r.cfg.Events
	r.progress("%s × %s: seeding %d events", r.dialect, rep.Broker, n)
	if err := r.seed(ctx, t, r.topics.drain, n); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	r.progress("%s × %s: draining with 1 relay", r.dialect, rep.Broker)
	procs, start, err := r.startRelays(ctx, table, 1)
	if err != nil {
		return err
	}
	m := r.meter(ctx, t.Driver.DB(), procs)
	end, err := r.waitDrained(ctx, t, procs, n)
	if err != nil {
		return err
	}
	rep.Drain = r.drainReport(ctx, m, 1, n, end.Sub(start))

	if r.cfg.Idle > 0 {
		r.progress("%s × %s: idle relay for %s", r.dialect, rep.Broker, r.cfg.Idle)
		m.reset(ctx)
		if err := sleep(ctx, r.cfg.Idle); err != nil {
			return err
		}
		cpu, _, _ := m.read(ctx)
		rep.IdleRelayCPUPercent = &cpu
	}

	r.progress("%s × %s: trickle at %d events/s for %s", r.dialect, rep.Broker, r.cfg.Rate, r.cfg.Duration)
	m.reset(ctx)
	lat, err := r.latency(ctx, t)
	if err != nil {
		return err
	}
	lat.RelayCPUPercent, lat.DBCPUPercent, lat.DBCPUScope = m.read(ctx)
	lat.RelayPeakRSSMB = m.peakRSS()
	rep.Latency = *lat
	stopAll(procs)
	return nil
}

func (r *run) drainReport(ctx context.Context, m *procMeter, relays, n int, d time.Duration) Drain {
	cpu, db, what := m.read(ctx)
	return Drain{
		Relays: relays, Events: n, Seconds: d.Seconds(), EventsPerSec: float64(n) / d.Seconds(),
		RelayCPUPercent: cpu, RelayPeakRSSMB: m.peakRSS(), DBCPUPercent: db, DBCPUScope: what,
	}
}

// drainMulti drains a fresh backlog with k relay processes.
func (r *run) drainMulti(ctx context.Context, k int) (*Drain, error) {
	t, table, err := r.openTable(ctx, "_m")
	if err != nil {
		return nil, err
	}
	n := r.cfg.Events
	r.progress("%s: seeding %d events for %d relays", r.dialect, n, k)
	if err := r.seed(ctx, t, r.topics.multi, n); err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	r.progress("%s: draining with %d relays", r.dialect, k)
	procs, start, err := r.startRelays(ctx, table, k)
	if err != nil {
		return nil, err
	}
	m := r.meter(ctx, t.Driver.DB(), procs)
	end, err := r.waitDrained(ctx, t, procs, n)
	if err != nil {
		return nil, err
	}
	d := r.drainReport(ctx, m, k, n, end.Sub(start))
	stopAll(procs)
	return &d, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
