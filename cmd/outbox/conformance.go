package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"
)

// conformanceBin is the runner `outbox conformance` execs. The suite runs
// through the testing package and an in-process Kafka; they live in that
// binary (module github.com/outboxkit/outboxkit/conformance), not in the
// operator's (TestOutboxLinksNoTestCode checks it).
const conformanceBin = "outbox-conformance"

// conformanceBinEnv names a runner to use instead of the lookup.
const conformanceBinEnv = "OUTBOX_CONFORMANCE_BIN"

// findConformanceBin returns the runner: $OUTBOX_CONFORMANCE_BIN, else
// outbox-conformance next to this executable, else on PATH.
func findConformanceBin() (string, error) {
	if p := os.Getenv(conformanceBinEnv); p != "" {
		return p, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), conformanceBin)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	if p, err := exec.LookPath(conformanceBin); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("conformance: the suite runs in the %s binary, found neither next to outbox nor on PATH "+
		"(set %s, or install it: go install github.com/outboxkit/outboxkit/conformance/cmd/%s@latest, "+
		"or take it from the release archive beside outbox)", conformanceBin, conformanceBinEnv, conformanceBin)
}

// passExit ends outbox with the runner's exit status; the runner already
// said why on stderr.
type passExit struct{ code int }

func (e *passExit) Error() string { return "exit status " + strconv.Itoa(e.code) }

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

The suite runs in a separate binary, outbox-conformance, which this
command executes with the same flags (and the URLs in its environment):
it is found next to the outbox binary, on PATH, or at $OUTBOX_CONFORMANCE_BIN.

Every test creates and drops its own outbox table (conf_...) and its own
stream, exchange and queue, or Redis stream; nothing else is touched, and
--table and --schema are ignored. Use a database and a broker you may
write to, not production. Brokers: nats://, amqp://, redis://, kafka://
(topics of several partitions created by the suite), memory://. Databases:
postgres://, mysql://, sqlite://.

No Go toolchain is needed: outbox-conformance re-executes itself as the
suite process (the SIGKILL test re-executes it again as the relay it kills).

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
				return usageError("no broker: set --broker-url or OUTBOX_BROKER_URL (nats://, amqp://, redis://, kafka://, memory://)")
			}
			bin, err := findConformanceBin()
			if err != nil {
				return err
			}
			args := []string{"--run", run, "--report-md", reportMD, "--report-junit", reportXML,
				"--parallel", strconv.Itoa(parallel), "--suite-timeout", suiteTimeout.String()}
			if short {
				args = append(args, "--short")
			}
			if verbose {
				args = append(args, "-v")
			}
			c := exec.CommandContext(cmd.Context(), bin, args...)
			// The URLs travel in the environment, not in the argument list
			// other users of the machine can read.
			c.Env = append(os.Environ(), "OUTBOX_DB_URL="+a.cfg.DBURL, "OUTBOX_BROKER_URL="+a.cfg.BrokerURL)
			c.Stdin, c.Stdout, c.Stderr = a.stdin, a.stdout, a.stderr
			// Interrupted: pass the signal on, so that the runner still
			// writes the reports of what ran; kill it if it does not end.
			c.Cancel = func() error { return c.Process.Signal(os.Interrupt) }
			c.WaitDelay = time.Minute
			err = c.Run()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return &passExit{max(ee.ExitCode(), 1)}
			}
			if err != nil {
				return fmt.Errorf("conformance: running %s: %w", bin, err)
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
