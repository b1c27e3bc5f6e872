package main

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/outboxkit/outboxkit/cmd/outbox/internal/bench"
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
		relayFlags []string
		notify     bool
		quiet      bool
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure relay throughput, latency and cost against Watermill's forwarder and the raw broker",
		Long: `bench measures the relay on real services, in one run per database × broker cell:

  1. drain: seeds --events events (300-byte payloads, 1000 keys) into a fresh
     outbox table and times one ` + "`outbox relay`" + ` process delivering them all
     (with --relays N, also N relay processes on a fresh backlog);
  2. idle and latency: the same relay idles for --idle, then a writer commits
     one event per transaction at --rate events/s for --duration; latency is
     commit → receipt by a durable consumer of the broker;
  3. baselines, same run, same services: Watermill's default SQL forwarder
     (watermill-sql v3, default schema and offsets adapter) draining --events
     messages to the same broker, and the broker's raw publish rate with as
     many publishes in flight as the relay has.

The relay runs as a child process so its CPU and memory come from /proc;
database CPU is read from /proc too (PostgreSQL: the backends of the relay's
sessions; MySQL/MariaDB: the whole server). Tables, streams and processes the
bench creates are removed at the end.

Without --db-url and --broker-url it uses the local test services
(` + benchPostgresURL + `, ` + benchNATSURL + `);
--matrix runs postgres × nats and mysql × nats (` + benchMySQLURL + `).
For nats:// the bench creates and deletes its own stream.`,
		Example: `  outbox bench
  outbox bench --matrix --events 50000 --relays 3
  outbox bench --db-url mysql://root@127.0.0.1:3306/test --broker-url nats://127.0.0.1:4222 --json`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			switch {
			case cfg.Events < 1:
				return usageError("--events %d must be positive", cfg.Events)
			case cfg.BatchSize < 0 || cfg.BatchSize > 10000:
				return usageError("--batch-size %d out of range 1..10000", cfg.BatchSize)
			case cfg.Rate < 1 || cfg.Rate > 100000:
				return usageError("--rate %d out of range 1..100000", cfg.Rate)
			case cfg.Duration <= 0:
				return usageError("--duration %s must be positive", cfg.Duration)
			case cfg.Relays < 1 || cfg.Relays > 16:
				return usageError("--relays %d out of range 1..16", cfg.Relays)
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
			cfg.RelayFlags = relayFlags
			cfg.RelayCommand = func(_ context.Context, dbURL, brokerURL, table string, batchSize int) *exec.Cmd {
				return relayProcess(self, dbURL, brokerURL, table, batchSize, relayFlags)
			}
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
	f.IntVar(&cfg.BatchSize, "batch-size", 0, "the relay's --batch-size (default: the relay's, 100)")
	f.IntVar(&cfg.Rate, "rate", 200, "trickle rate for the latency phase, events/s")
	f.DurationVar(&cfg.Duration, "duration", 5*time.Second, "length of the trickle")
	f.DurationVar(&cfg.Idle, "idle", 2*time.Second, "how long the idle relay's CPU is measured (0 skips it)")
	f.IntVar(&cfg.Relays, "relays", 1, "also drain a fresh backlog with this many relay processes at once (1: skip)")
	f.BoolVar(&cfg.NoBaselines, "no-baselines", false, "skip the Watermill forwarder and raw broker baselines (e.g. for a 1M backlog)")
	f.BoolVar(&notify, "notify", false, "PostgreSQL: writers NOTIFY on commit and relays LISTEN (relay --notify)")
	f.StringArrayVar(&relayFlags, "relay-flag", nil, "extra flag for every relay process, e.g. --relay-flag=--concurrency=4 (repeatable)")
	f.BoolVar(&matrix, "matrix", false, "run postgres × nats and mysql × nats on the local services")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	f.BoolVar(&quiet, "quiet", false, "do not print progress on stderr")
	return cmd
}

// benchOpen opens the outbox table named table on dbURL for the bench.
func (a *app) benchOpen(ctx context.Context, dbURL, table string) (*bench.Target, error) {
	sub := &app{stdin: a.stdin, stdout: a.stdout, stderr: a.stderr, flags: a.flags,
		cfg: &fileConfig{DBURL: dbURL, Table: table, Notify: a.benchNotify}}
	drv, ob, closeDB, err := sub.openOutbox(ctx)
	if err != nil {
		return nil, err
	}
	return &bench.Target{Outbox: ob, Driver: drv, Close: closeDB}, nil
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
	cmd := exec.Command(self, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OUTBOX_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	return cmd
}
