package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/outboxkit/outboxkit/cmd/outbox/internal/bench"
	"github.com/outboxkit/outboxkit/drivers/postgres"
	"github.com/outboxkit/outboxkit/framework/outboxbroker"
)

// Local test services the bench uses when no URL is given (the same as the
// repository's tests).
const (
	benchPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	benchMySQLURL    = "mysql://root@127.0.0.1:3306/test"
	benchNATSURL     = "nats://127.0.0.1:4222"
)

func (a *app) benchCommand() *cobra.Command {
	var (
		cfg        bench.Config
		asJSON     bool
		matrix     bool
		compare    bool
		baselines  []string
		relayFlags []string
		notify     bool
		quiet      bool
		mode       string
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure relay throughput, latency and cost against a minimal relay, Watermill's forwarder and the raw broker",
		Long: `bench measures the relay on real services, per database × broker cell, in
--reps interleaved repetitions (relay, minimal relay, forwarder, raw publish,
then the relay again...), each on fresh tables and a fresh backlog:

  1. drain: seeds --events events (300-byte payloads, 1000 keys) into a fresh
     outbox table, ANALYZEs it, and times one ` + "`outbox relay`" + ` process delivering them all
     (with --relays N, also N relay processes on a fresh backlog; with
     --large-events N, also one relay on a backlog of N);
  2. idle and latency: the same relay idles for --idle, then a writer commits
     one event per transaction at --rate events/s for --duration; latency is
     commit → receipt by a durable consumer of the broker;
  3. baselines (--baselines), same services:
     minimal: a hand-written relay in its own process (one loop: SELECT ...
       ORDER BY seq LIMIT 500 FOR UPDATE SKIP LOCKED, publish all 500 at once
       through the same broker publisher, wait for the acks, DELETE, COMMIT;
       no per-key order, no retry), measured exactly as the relay;
     forwarder: Watermill's default SQL forwarder (watermill-sql v3) draining
       the same backlog to the same broker;
     raw: the broker's raw publish (PublishAsync when the broker module has
       it) with as many publishes in flight as the relay (--in-flight).

Every figure is reported as the median of the reps and their spread
(min .. max); ratios (relay / baseline) are computed per rep, then
summarized. --compare asks for all three baselines and 3 reps.

--poison N replaces the drains by the poison scenario (NATS): N events, one
per key, to a subject outside the bench's stream (JetStream refuses each
publish), retried by the relay while other keys trickle at --rate for
--poison-duration; it reports those other keys' latency.

The relay runs as a child process so its CPU and memory come from /proc;
database CPU is read from /proc too (PostgreSQL: the backends of the relay's
sessions; MySQL/MariaDB: the whole server). Tables, streams and processes the
bench creates are removed at the end.

Without --db-url and --broker-url it uses the local test services
(` + benchPostgresURL + `, ` + benchNATSURL + `);
--matrix runs postgres × nats and mysql × nats (` + benchMySQLURL + `).
For nats:// the bench creates and deletes its own stream; kfake:// starts an
in-process Kafka (franz-go's kfake) for the run, in a binary built with
-tags kfake (make bench builds one; the operator binary links no test fake).`,
		Example: `  outbox bench
  outbox bench --matrix --compare --events 100000
  outbox bench --broker-url amqp://guest:guest@127.0.0.1:5672/ --reps 3 --baselines raw
  outbox bench --poison 3 --reps 3
  outbox bench --events 100000 --large-events 1000000 --reps 3 --no-baselines
  outbox bench --db-url mysql://root@127.0.0.1:3306/test --broker-url nats://127.0.0.1:4222 --json`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			switch {
			case cfg.Events < 1:
				return usageError("--events %d must be positive", cfg.Events)
			case cfg.Keys < 1:
				return usageError("--keys %d must be positive", cfg.Keys)
			case cfg.BatchSize < 0 || cfg.BatchSize > 10000:
				return usageError("--batch-size %d out of range 1..10000", cfg.BatchSize)
			case cfg.Rate < 1 || cfg.Rate > 100000:
				return usageError("--rate %d out of range 1..100000", cfg.Rate)
			case cfg.Duration <= 0:
				return usageError("--duration %s must be positive", cfg.Duration)
			case cfg.Relays < 1 || cfg.Relays > 16:
				return usageError("--relays %d out of range 1..16", cfg.Relays)
			case cfg.Reps < 0 || cfg.Reps > 100:
				return usageError("--reps %d out of range 1..100", cfg.Reps)
			case cfg.InFlight < 0 || cfg.InFlight > 100000:
				return usageError("--in-flight %d out of range 1..100000", cfg.InFlight)
			case cfg.LargeEvents < 0 || cfg.Poison < 0 || cfg.Poison > 100:
				return usageError("--large-events must not be negative and --poison must be in 0..100")
			case cfg.PoisonDuration <= 0:
				return usageError("--poison-duration %s must be positive", cfg.PoisonDuration)
			case compare && (cfg.NoBaselines || c.Flags().Changed("baselines")):
				return usageError("--compare measures every baseline: drop --no-baselines and --baselines")
			case compare && cfg.Poison > 0:
				return usageError("--poison runs no drain to compare: drop --compare")
			}
			for _, b := range baselines {
				if b != bench.BaselineMinimal && b != bench.BaselineForwarder && b != bench.BaselineRaw && b != bench.BaselinePoll && b != "none" {
					return usageError("--baselines %q: want a list of minimal, forwarder, raw, poll (or none)", b)
				}
			}
			switch mode {
			case "", "poll":
				mode = ""
			case "cdc":
				if !c.Flags().Changed("baselines") {
					baselines = []string{bench.BaselinePoll, bench.BaselineRaw}
				}
			default:
				return usageError("--mode %q: want poll or cdc", mode)
			}
			if mode == "" && slices.Contains(baselines, bench.BaselinePoll) {
				return usageError("--baselines poll: only with --mode cdc (the relay is the polling relay)")
			}
			cfg.Baselines = slices.DeleteFunc(slices.Clone(baselines), func(b string) bool { return b == "none" })
			if cfg.Reps == 0 {
				cfg.Reps = 1
				if compare {
					cfg.Reps = 3
				}
			}
			broker := cmp.Or(a.cfg.BrokerURL, benchNATSURL)
			if matrix {
				if a.cfg.DBURL != "" {
					return usageError("--matrix picks the databases itself: drop --db-url")
				}
				cfg.Cells = []bench.Cell{{DBURL: benchPostgresURL, BrokerURL: broker}, {DBURL: benchMySQLURL, BrokerURL: broker}}
			} else {
				cfg.Cells = []bench.Cell{{DBURL: cmp.Or(a.cfg.DBURL, benchPostgresURL), BrokerURL: broker}}
			}
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("locate the outbox binary for the relay processes: %w", err)
			}
			a.benchNotify = notify
			if notify {
				relayFlags = append(relayFlags, "--notify")
			}
			cfg.Open = a.benchOpen
			pollFlags := slices.Clone(relayFlags)
			if mode == "cdc" {
				if matrix {
					return usageError("--mode cdc: PostgreSQL only, drop --matrix")
				}
				relayFlags = append(relayFlags, "--mode", "cdc")
				a.cdc = true
				cfg.Prepare, cfg.Settle = benchPrepareCDC, benchSettleCDC
				cfg.PollCommand = func(_ context.Context, dbURL, brokerURL, table string, batchSize int) *exec.Cmd {
					return relayProcess(self, dbURL, brokerURL, table, batchSize, pollFlags)
				}
			}
			cfg.RelayFlags = relayFlags
			cfg.RelayCommand = func(_ context.Context, dbURL, brokerURL, table string, batchSize int) *exec.Cmd {
				return relayProcess(self, dbURL, brokerURL, table, batchSize, relayFlags)
			}
			cfg.MinimalCommand = func(_ context.Context, dbURL, brokerURL, table string) *exec.Cmd {
				return benchChild(self, "bench", "minimal-relay", "--db-url", dbURL, "--broker-url", brokerURL, "--table", table)
			}
			cfg.CommandLine = commandLine(c)
			if cfg.Idle == 0 {
				cfg.Idle = -1
			}
			if !quiet {
				cfg.Progress = a.stderr
			}
			rep, err := bench.Run(c.Context(), cfg)
			if err != nil {
				return err
			}
			if asJSON {
				return rep.WriteJSON(a.stdout)
			}
			return rep.WriteTable(a.stdout)
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Events, "events", 10000, "backlog size of each drain and baseline")
	f.IntVar(&cfg.Keys, "keys", 1000, "distinct event keys the backlog cycles through")
	f.IntVar(&cfg.Reps, "reps", 0, "interleaved repetitions of every measurement (default 1; 3 with --compare)")
	f.BoolVar(&compare, "compare", false, "measure every baseline (minimal relay, forwarder, raw) in 3 interleaved reps unless --reps says otherwise")
	f.StringSliceVar(&baselines, "baselines", []string{bench.BaselineMinimal, bench.BaselineForwarder, bench.BaselineRaw}, "baselines to measure in each rep: minimal, forwarder, raw, or none")
	f.IntVar(&cfg.InFlight, "in-flight", 0, "publishes in flight of the raw baseline (default: the relay's, from its batch size × concurrency, at most the keys)")
	f.IntVar(&cfg.BatchSize, "batch-size", 0, "the relay's --batch-size (default: the relay's)")
	f.IntVar(&cfg.Rate, "rate", 200, "trickle rate for the latency phase, events/s")
	f.DurationVar(&cfg.Duration, "duration", 5*time.Second, "length of the trickle")
	f.DurationVar(&cfg.Idle, "idle", 2*time.Second, "how long the idle relay's CPU is measured (0 skips it)")
	f.IntVar(&cfg.Relays, "relays", 1, "also drain a fresh backlog with this many relay processes at once (1: skip)")
	f.IntVar(&cfg.LargeEvents, "large-events", 0, "also drain a backlog of this many events with one relay in each rep, and report its rate / the --events rate")
	f.IntVar(&cfg.Poison, "poison", 0, "run the poison scenario instead of the drains: this many always-refused events (one per key), other keys trickling at --rate (NATS)")
	f.DurationVar(&cfg.PoisonDuration, "poison-duration", 10*time.Second, "length of the poison scenario's trickle")
	f.BoolVar(&cfg.NoBaselines, "no-baselines", false, "skip every baseline (same as --baselines none)")
	f.BoolVar(&notify, "notify", false, "PostgreSQL: writers NOTIFY on commit and relays LISTEN (relay --notify)")
	f.StringVar(&mode, "mode", "", "poll or cdc: the relay's --mode; with cdc (a PostgreSQL with wal_level=logical in --db-url) the baselines default to poll (the polling relay on the same database) and raw, and each fresh table gets its replication slot before it is seeded, its backlog marked read as if a relay had streamed from the slot before, so the backlog reaches the relay through the log (a relay restarted after downtime), not from the table (a slot's first stream)")
	f.StringArrayVar(&relayFlags, "relay-flag", nil, "extra flag for every relay process, e.g. --relay-flag=--concurrency=4 (repeatable)")
	f.BoolVar(&matrix, "matrix", false, "run postgres × nats and mysql × nats on the local services")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	f.BoolVar(&quiet, "quiet", false, "do not print progress on stderr")
	cmd.AddCommand(a.minimalRelayCommand())
	return cmd
}

// minimalRelayCommand is the minimal-relay baseline's process, started by
// the bench (hidden: not a relay anyone should run).
func (a *app) minimalRelayCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "minimal-relay",
		Short:  "The bench's minimal-relay baseline (no per-key order, no retry, deletes what it publishes)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if a.cfg.DBURL == "" || a.cfg.BrokerURL == "" || a.cfg.Table == "" {
				return usageError("minimal-relay needs --db-url, --broker-url and --table")
			}
			u, err := url.Parse(a.cfg.DBURL)
			if err != nil {
				return usageError("--db-url is not a URL")
			}
			dialect := u.Scheme
			if dialect == "postgresql" {
				dialect = "postgres"
			}
			t, err := a.benchOpen(c.Context(), a.cfg.DBURL, a.cfg.Table)
			if err != nil {
				return err
			}
			defer t.Close()
			broker, err := outboxbroker.Open(c.Context(), a.cfg.BrokerURL, outboxbroker.Options{})
			if err != nil {
				return fmt.Errorf("open broker %s: %w", outboxbroker.Redact(a.cfg.BrokerURL), err)
			}
			defer broker.Close()
			return bench.MinimalRelay{DB: t.Driver.DB(), Dialect: dialect, Table: a.cfg.Table,
				Publisher: broker.Publisher, Log: a.stderr}.Run(c.Context())
		},
	}
}

// commandLine renders the bench's command line from the flags given,
// passwords in URLs redacted.
func commandLine(c *cobra.Command) string {
	parts := []string{c.CommandPath()}
	c.Flags().Visit(func(f *pflag.Flag) {
		vals := []string{f.Value.String()}
		if f.Value.Type() == "stringArray" {
			vals, _ = c.Flags().GetStringArray(f.Name)
		}
		for _, v := range vals {
			if f.Value.Type() == "bool" {
				parts = append(parts, "--"+f.Name)
				continue
			}
			parts = append(parts, "--"+f.Name+"="+outboxbroker.Redact(v))
		}
	})
	return strings.Join(parts, " ")
}

// benchOpen opens the outbox table named table on dbURL for the bench.
func (a *app) benchOpen(ctx context.Context, dbURL, table string) (*bench.Target, error) {
	sub := &app{stdin: a.stdin, stdout: a.stdout, stderr: a.stderr, flags: a.flags,
		cfg: &fileConfig{DBURL: dbURL, Table: table, Notify: a.benchNotify}, cdc: a.cdc}
	drv, ob, closeDB, err := sub.openOutbox(ctx)
	if err != nil {
		return nil, err
	}
	return &bench.Target{Outbox: ob, Driver: drv, Close: closeDB}, nil
}

// benchPrepareCDC creates the replication slot of a fresh bench table
// (bench --mode cdc) before it is seeded, and records that the slot's
// backlog was read, as a relay that streamed from it before would have: the
// CDC relay then reads the backlog from the log, as one restarted after
// downtime does. (A slot's first stream reads every pending event from the
// table instead, and drops what its log replays of them.) The cleanup
// drops the slot, the publication and the state table.
func benchPrepareCDC(ctx context.Context, t *bench.Target) (func(), error) {
	c, ok := t.Driver.(*postgres.CDC)
	if !ok {
		return nil, fmt.Errorf("--mode cdc: driver %T is not PostgreSQL's CDC driver", t.Driver)
	}
	if _, err := c.SlotCreate(ctx); err != nil {
		return nil, err
	}
	if _, err := c.DB().ExecContext(ctx, "UPDATE "+strings.TrimSuffix(c.Table(), `"`)+`_cdc_state" SET backlog_done = true WHERE slot = $1`, c.Slot()); err != nil {
		return nil, err
	}
	return func() {
		for range 50 { // the server frees the slot once the relay's connection is gone
			err := c.SlotDrop(context.Background())
			if err == nil || errors.Is(err, postgres.ErrSlotNotFound) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		_, _ = c.DB().Exec(`DROP PUBLICATION IF EXISTS "` + c.Publication() + `"`)
		_, _ = c.DB().Exec("DROP TABLE IF EXISTS " + strings.TrimSuffix(c.Table(), `"`) + `_cdc_state"`)
	}, nil
}

// benchSettleCDC waits until the server has sent the CDC relay's stream
// everything written before it was called (sent_lsn in
// pg_stat_replication): after the last event of a backlog was delivered,
// the relay still reads the log of its own outcome writes, which it reads
// only as Next takes events (the stream keeps a few batches ready, not the
// whole backlog).
func benchSettleCDC(ctx context.Context, t *bench.Target) error {
	c, ok := t.Driver.(*postgres.CDC)
	if !ok {
		return fmt.Errorf("--mode cdc: driver %T is not PostgreSQL's CDC driver", t.Driver)
	}
	var target string
	if err := c.DB().QueryRowContext(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&target); err != nil {
		return err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var sent bool
		err := c.DB().QueryRowContext(ctx, `SELECT coalesce(bool_or(r.sent_lsn >= $2::pg_lsn), false)
FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = $1`,
			c.Slot(), target).Scan(&sent)
		if err != nil || sent {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the CDC relay did not read the log up to %s within 2 minutes of the drain", target)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// relayProcess is the `outbox relay` child process the bench measures: this
// very binary, configured by flags only (no config file, no OUTBOX_*
// variables), logging JSON at info level on stderr.
func relayProcess(self, dbURL, brokerURL, table string, batchSize int, extra []string) *exec.Cmd {
	args := []string{"relay", "--db-url", dbURL, "--broker-url", brokerURL, "--table", table, "--log-level", "info"}
	if batchSize > 0 {
		args = append(args, "--batch-size", strconv.Itoa(batchSize))
	}
	args = append(args, extra...)
	return benchChild(self, args...)
}

// benchChild is a child process of the bench running this very binary with
// args, without the OUTBOX_* variables of the bench's environment.
func benchChild(self string, args ...string) *exec.Cmd {
	cmd := exec.Command(self, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OUTBOX_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	return cmd
}
