// Command outbox is the operator CLI of outboxkit: migrate the outbox table,
// run the relay as a daemon, and inspect, retry and purge events.
//
// Configuration comes from flags, then environment variables (OUTBOX_DB_URL,
// OUTBOX_BROKER_URL, OUTBOX_TABLE, OUTBOX_SCHEMA, OUTBOX_CONFIG), then an
// optional YAML file (--config), then defaults. Secrets in URLs are never
// printed.
//
// Exit codes: 0 success; 1 runtime error (database or broker); 2 usage or
// configuration error; 3 event not found; 4 aborted at a confirmation prompt.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes, documented in the package comment and in `outbox --help`.
const (
	exitOK       = 0
	exitError    = 1
	exitUsage    = 2
	exitNotFound = 3
	exitAborted  = 4
)

// exitError carries a specific exit code.
type codedError struct {
	code int
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

func usageError(format string, args ...any) error {
	return &codedError{exitUsage, fmt.Errorf(format, args...)}
}

func main() {
	ctx, stop := withSignals(context.Background(), os.Stderr, os.Exit)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// errSignal is the cause of the context cancelled by the first SIGINT or
// SIGTERM; commands log it (the relay as "stopping").
var errSignal = errors.New("signal received")

// withSignals returns a context cancelled, with a cause wrapping errSignal,
// at the first SIGINT or SIGTERM. A second signal does not wait for the
// graceful stop: it prints why and calls exit(1) at once.
func withSignals(parent context.Context, stderr io.Writer, exit func(int)) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			cancel(fmt.Errorf("%w: %s", errSignal, s))
		case <-done:
			return
		}
		select {
		case s := <-sigs:
			fmt.Fprintf(stderr, "outbox: second signal (%s): exiting at once, without waiting for in-flight events (they are published again after their lease)\n", s)
			exit(exitError)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel(nil)
	}
}

// run executes the CLI and returns the exit code; tests call it directly.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := newApp(stdin, stdout, stderr)
	root := app.rootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	if pe := (*passExit)(nil); errors.As(err, &pe) {
		return pe.code // a program outbox ran (outbox-conformance) said why
	}
	// Sentinels start with "outbox: " too: say it once.
	msg := strings.ReplaceAll(redactAll(oneLine(err.Error())), ": outbox: ", ": ")
	fmt.Fprintln(stderr, "outbox: "+strings.TrimPrefix(msg, "outbox: "))
	var ce *codedError
	if errors.As(err, &ce) {
		return ce.code
	}
	if isFlagError(err) {
		return exitUsage
	}
	return exitError
}

type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	flags          globalFlags
	cfg            *fileConfig
	benchNotify    bool // bench --notify: the bench's writers notify
	// deleteDelivered is relay --delete-delivered (PostgreSQL driver only).
	deleteDelivered bool
	// cdc opens the PostgreSQL driver in CDC mode (relay --mode cdc, the
	// cdc commands), on replication slot cdcSlot (empty: the default).
	cdc     bool
	cdcSlot string
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *app {
	return &app{stdin: stdin, stdout: stdout, stderr: stderr}
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "outbox",
		Short: "Operate an outboxkit transactional outbox",
		Long: `outbox migrates the outbox table, runs the relay, and lets operators inspect,
retry and purge events.

Configuration: flags, then environment (OUTBOX_DB_URL, OUTBOX_BROKER_URL,
OUTBOX_TABLE, OUTBOX_SCHEMA, OUTBOX_CONFIG), then the YAML file given by
--config, then defaults.

Exit codes: 0 success, 1 runtime error, 2 usage or configuration error,
3 event not found, 4 aborted at a confirmation prompt.`,
		Version:       version(),
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return a.loadConfig()
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError("%v", err) })
	a.flags.register(root)
	root.AddCommand(a.migrateCommand(), a.relayCommand(), a.statusCommand(), a.listCommand(),
		a.showCommand(), a.retryCommand(), a.purgeCommand())
	root.AddCommand(a.benchCommand())
	root.AddCommand(a.conformanceCommand())
	root.AddCommand(a.uiCommand())
	root.AddCommand(a.cdcCommand())
	return root
}

// version is the module version the binary was built from (go install
// ...@v1.2.3), or "(devel)" with the VCS revision when built from a checkout.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return strings.TrimSpace(v + " " + bi.GoVersion)
}

func isFlagError(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown flag", "unknown command", "unknown shorthand", "invalid argument", "flag needs an argument", "accepts ", "requires "} {
		if len(msg) >= len(p) && contains(msg, p) {
			return true
		}
	}
	return false
}
