package main

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/outboxkit/outboxkit/conformance"
	"github.com/outboxkit/outboxkit/framework/outboxbroker"
)

// init hands the process to the conformance suite when `outbox conformance`
// re-executed this binary as its suite process (conformance.ExecEnv set):
// the suite runs through testing.Main and exits. It is an init function,
// not a line in main, so that it runs before cobra (or anything else) reads
// os.Args, which then hold -test.* flags only; without the variable it
// returns at once.
func init() { conformance.ExecMain() }

func (a *app) conformanceCommand() *cobra.Command {
	var (
		short               bool
		run                 string
		reportMD, reportXML string
		parallel            int
		suiteTimeout        time.Duration
		verbose             bool
	)
	cmd := &cobra.Command{
		Use:   "conformance",
		Short: "Run the delivery-contract suite against a database and a broker; write Markdown/JUnit reports",
		Long: `conformance runs outboxkit's conformance suite (C1 atomic, C2 no loss,
C3 bounded duplicates, C4 per-key order, C5 failure isolation, C6 visible
state, C7 bad input) against the database of --db-url and the broker of
--broker-url: the cell your services form. It kills relays with SIGKILL,
cuts connections through a loopback TCP proxy and commits out of order.

Every test creates and drops its own outbox table (conf_...) and its own
stream, exchange and queue, or Redis stream; nothing else is touched, and
--table and --schema are ignored. Use a database and a broker you may
write to, not production. Brokers: nats://, amqp://, redis://, memory://
(kafka:// is not supported: run go test github.com/outboxkit/outboxkit/conformance,
which starts an in-process Kafka cluster). Databases: postgres://, mysql://,
sqlite://.

No Go toolchain is needed: the binary re-executes itself as the suite
process (the SIGKILL test re-executes it again as the relay it kills).

The contract-line table and every failure are printed on stdout and, with
--report-md, written as Markdown; --report-junit writes JUnit XML (one
testcase per contract test) for CI test-report viewers.

Exit codes: 0 every selected test passed or was skipped, 1 a test failed
(or the database or broker is unreachable, or the suite process died),
2 usage error (missing URL, unsupported scheme, bad --run, --run matching
no test).`,
		Example: `  outbox conformance --db-url postgres://app@db/app --broker-url nats://nats:4222 \
      --report-md conformance.md --report-junit conformance.xml
  outbox conformance --db-url mysql://root@127.0.0.1:3306/test --broker-url amqp://guest:guest@127.0.0.1:5672/ --short
  outbox conformance --db-url sqlite:///tmp/conf.db --broker-url memory:// --run 'C1|C7'
  outbox conformance --db-url postgres://app@db/app --broker-url redis://redis:6379/0 --run C2/broker_cut -v`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if a.cfg.DBURL == "" {
				return usageError("no database: set --db-url or OUTBOX_DB_URL")
			}
			if a.cfg.BrokerURL == "" {
				return usageError("no broker: set --broker-url or OUTBOX_BROKER_URL (nats://, amqp://, redis://, memory://)")
			}
			if _, err := conformance.HarnessFromURLs(a.cfg.DBURL, a.cfg.BrokerURL); err != nil {
				return usageError("%v", err)
			}
			if _, err := regexp.Compile(run); err != nil {
				return usageError("--run %q: %v", run, err)
			}
			if parallel < 0 {
				return usageError("--parallel must be positive")
			}
			for _, p := range []string{reportMD, reportXML} {
				if p == "" {
					continue
				}
				f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o644)
				if err != nil {
					return usageError("report file: %v", err)
				}
				f.Close()
			}
			ctx := cmd.Context()
			// Reachability first: one clear line instead of every test
			// failing with a connection error.
			_, _, closeDB, err := a.openOutbox(ctx)
			if err != nil {
				return err
			}
			closeDB()
			if err := brokerReachable(ctx, a.cfg.BrokerURL); err != nil {
				return fmt.Errorf("%v (%s)", err, outboxbroker.Redact(a.cfg.BrokerURL))
			}

			cfg := conformance.ExecConfig{
				DatabaseURL: a.cfg.DBURL, BrokerURL: a.cfg.BrokerURL,
				Short: short, Run: run, Parallel: parallel, Timeout: suiteTimeout,
				Progress: func(t conformance.TestResult) {
					fmt.Fprintf(a.stderr, "%-4s %s/%s (%s)\n", strings.ToUpper(string(t.Status)), t.Line, t.Test, t.Duration.Round(10*time.Millisecond))
				},
			}
			if verbose {
				cfg.Log = a.stderr
			}
			counts := "full counts"
			if short {
				counts = "short counts"
			}
			fmt.Fprintf(a.stderr, "conformance: %s × %s, %s\n", outboxbroker.Redact(a.cfg.DBURL), outboxbroker.Redact(a.cfg.BrokerURL), counts)
			rep, err := conformance.Exec(ctx, cfg)
			if err != nil && rep == nil {
				return err
			}
			if werr := writeReports(rep, reportMD, reportXML); werr != nil {
				return werr
			}
			if err := rep.WriteMarkdown(a.stdout); err != nil {
				return err
			}
			if err != nil {
				return err // interrupted: the reports show what ran
			}
			pass, fail, skip := rep.Counts()
			if len(rep.Tests) == 0 && !rep.Failed() {
				return usageError("--run %q matched no contract test (forms: C1, 'C1|C7', C2/broker_cut)", run)
			}
			if rep.Failed() {
				if fail == 0 {
					return fmt.Errorf("conformance: the suite process failed (exit status %d) outside any contract test: see its output above", rep.ExitCode)
				}
				return fmt.Errorf("conformance: %d of %d tests failed", fail, pass+fail+skip)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&short, "short", false, "small event counts (as go test -short): seconds instead of minutes")
	f.StringVar(&run, "run", "", "run only the contract tests matching LINE[/TEST] regexps, e.g. 'C1|C7' or C2/broker_cut")
	f.StringVar(&reportMD, "report-md", "", "write the Markdown report to this file")
	f.StringVar(&reportXML, "report-junit", "", "write the JUnit XML report to this file")
	f.IntVar(&parallel, "parallel", 4, "most tests running at once")
	f.DurationVar(&suiteTimeout, "suite-timeout", 30*time.Minute, "limit of the whole run; tests still running then fail")
	f.BoolVarP(&verbose, "verbose", "v", false, "stream every test's log (go test -v form) to stderr")
	return cmd
}

// writeReports writes the Markdown and JUnit reports to the paths given.
func writeReports(rep *conformance.Report, md, junit string) error {
	for _, out := range []struct {
		path  string
		write func(f *os.File) error
	}{
		{md, func(f *os.File) error { return rep.WriteMarkdown(f) }},
		{junit, func(f *os.File) error { return rep.WriteJUnit(f) }},
	} {
		if out.path == "" {
			continue
		}
		f, err := os.Create(out.path)
		if err != nil {
			return err
		}
		if err := out.write(f); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	return nil
}
