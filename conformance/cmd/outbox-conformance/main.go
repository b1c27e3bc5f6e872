// Command outbox-conformance runs outboxkit's conformance suite against a
// database and a broker, without the Go toolchain: it re-executes itself as
// the suite process (the suite runs through the testing package, which is
// why this is a binary of its own and the operator CLI `outbox` does not
// link it: `outbox conformance` execs this binary with the same flags).
//
//	outbox-conformance --db-url URL --broker-url URL [--short] [--run RE]
//	    [--report-md FILE] [--report-junit FILE] [--parallel N]
//	    [--suite-timeout D] [-v]
//
// The URLs may also come from OUTBOX_DB_URL and OUTBOX_BROKER_URL (the
// outbox CLI passes them so, never in the argument list). Exit codes: 0 every
// selected test passed or was skipped, 1 a test failed (or the database or
// broker is unreachable, or the suite process died), 2 usage error.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/outboxkit/outboxkit/conformance"
	"github.com/outboxkit/outboxkit/framework/outboxbroker"
)

// usage is an error of the command line (exit status 2).
type usage struct{ error }

func usagef(format string, args ...any) error { return usage{fmt.Errorf(format, args...)} }

func main() {
	conformance.ExecMain() // the suite process: runs the suite and exits
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "outbox-conformance: "+oneLine(redact(err.Error())))
	var u usage
	if errors.As(err, &u) {
		os.Exit(2)
	}
	os.Exit(1)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("outbox-conformance", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		dbURL     = fs.String("db-url", os.Getenv("OUTBOX_DB_URL"), "database: postgres://, mysql:// or sqlite:// (default $OUTBOX_DB_URL)")
		brokerURL = fs.String("broker-url", os.Getenv("OUTBOX_BROKER_URL"), "broker: nats://, amqp://, redis://, kafka:// or memory:// (default $OUTBOX_BROKER_URL)")
		short     = fs.Bool("short", false, "small event counts (as go test -short): seconds instead of minutes")
		runRE     = fs.String("run", "", "run only the contract tests matching LINE[/TEST] regexps, e.g. 'C1|C7' or C2/broker_cut")
		reportMD  = fs.String("report-md", "", "write the Markdown report to this file")
		reportXML = fs.String("report-junit", "", "write the JUnit XML report to this file")
		parallel  = fs.Int("parallel", 4, "most tests running at once")
		timeout   = fs.Duration("suite-timeout", 30*time.Minute, "limit of the whole run; tests still running then fail")
		verbose   bool
	)
	fs.BoolVar(&verbose, "v", false, "stream every test's log (go test -v form) to stderr")
	fs.BoolVar(&verbose, "verbose", false, "same as -v")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usage{err}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	if *dbURL == "" {
		return usagef("no database: set --db-url or OUTBOX_DB_URL")
	}
	if *brokerURL == "" {
		return usagef("no broker: set --broker-url or OUTBOX_BROKER_URL (nats://, amqp://, redis://, kafka://, memory://)")
	}
	h, err := conformance.HarnessFromURLs(*dbURL, *brokerURL)
	if err != nil {
		return usage{err}
	}
	if _, err := regexp.Compile(*runRE); err != nil {
		return usagef("--run %q: %v", *runRE, err)
	}
	if *parallel < 1 {
		return usagef("--parallel must be positive")
	}
	for _, p := range []string{*reportMD, *reportXML} {
		if p == "" {
			continue
		}
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o644)
		if err != nil {
			return usagef("report file: %v", err)
		}
		f.Close()
	}
	// Reachability first: one clear line instead of every test failing
	// with a connection error.
	if err := databaseReachable(ctx, h.Database); err != nil {
		return err
	}
	if err := brokerReachable(ctx, *brokerURL); err != nil {
		return fmt.Errorf("%v (%s)", err, outboxbroker.Redact(*brokerURL))
	}

	cfg := conformance.ExecConfig{
		DatabaseURL: *dbURL, BrokerURL: *brokerURL,
		Short: *short, Run: *runRE, Parallel: *parallel, Timeout: *timeout,
		Progress: func(t conformance.TestResult) {
			fmt.Fprintf(stderr, "%-4s %s/%s (%s)\n", strings.ToUpper(string(t.Status)), t.Line, t.Test, t.Duration.Round(10*time.Millisecond))
		},
	}
	if verbose {
		cfg.Log = stderr
	}
	counts := "full counts"
	if *short {
		counts = "short counts"
	}
	fmt.Fprintf(stderr, "conformance: %s × %s, %s\n", outboxbroker.Redact(*dbURL), outboxbroker.Redact(*brokerURL), counts)
	rep, err := conformance.Exec(ctx, cfg)
	if err != nil && rep == nil {
		return err
	}
	if werr := writeReports(rep, *reportMD, *reportXML); werr != nil {
		return werr
	}
	if err := rep.WriteMarkdown(stdout); err != nil {
		return err
	}
	if err != nil {
		return err // interrupted: the reports show what ran
	}
	pass, fail, skip := rep.Counts()
	if len(rep.Tests) == 0 && !rep.Failed() {
		return usagef("--run %q matched no contract test (forms: C1, 'C1|C7', C2/broker_cut)", *runRE)
	}
	if rep.Failed() {
		if fail == 0 {
			return fmt.Errorf("the suite process failed (exit status %d) outside any contract test: see its output above", rep.ExitCode)
		}
		return fmt.Errorf("%d of %d tests failed", fail, pass+fail+skip)
	}
	return nil
}

// databaseReachable opens the cell's database and pings it (a SQLite file
// is created on the way, as the suite would).
func databaseReachable(ctx context.Context, d conformance.Database) error {
	db, err := sql.Open(d.DriverName, d.DSN)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		where := d.Addr
		if where == "" {
			where = d.Name
		}
		return fmt.Errorf("database unreachable at %s: %v", where, err)
	}
	return nil
}

// defaultPorts are the ports of the networked broker schemes.
var defaultPorts = map[string]string{
	"nats": "4222", "kafka": "9092", "amqp": "5672", "amqps": "5671", "redis": "6379", "rediss": "6379",
}

// brokerReachable dials the broker's host (any of a comma-separated list).
func brokerReachable(ctx context.Context, rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return nil
	}
	port, networked := defaultPorts[u.Scheme]
	if !networked {
		return nil
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	for _, host := range strings.Split(u.Host, ",") {
		if _, _, err := net.SplitHostPort(host); err != nil {
			host = net.JoinHostPort(host, port)
		}
		if c, err := d.DialContext(ctx, "tcp", host); err == nil {
			c.Close()
			return nil
		}
	}
	return fmt.Errorf("broker unreachable at %s", u.Host)
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

// urlRe finds URLs with credentials in an error message.
var urlRe = regexp.MustCompile(`[a-z][a-z0-9+.-]*://[^\s"']+`)

// redact removes the passwords of the URLs in s.
func redact(s string) string {
	return urlRe.ReplaceAllStringFunc(s, outboxbroker.Redact)
}

// oneLine keeps the first line of s.
func oneLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}
