package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSignals: the first SIGTERM cancels the context with a cause naming the
// signal, the second calls exit(1) at once instead of waiting for the
// graceful stop. Not parallel: it signals its own process.
func TestSignals(t *testing.T) {
	exited := make(chan int, 1)
	ctx, stop := withSignals(context.Background(), io.Discard, func(code int) { exited <- code })
	defer stop()
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the first SIGTERM did not cancel the context")
	}
	if !errors.Is(context.Cause(ctx), errSignal) || !strings.Contains(context.Cause(ctx).Error(), "terminated") {
		t.Fatalf("cause %v", context.Cause(ctx))
	}
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-exited:
		if code != exitError {
			t.Fatalf("exit(%d) at the second signal, want %d", code, exitError)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the second SIGTERM did not exit")
	}
}

// TestRelayLogsTheSignal runs the binary on SQLite and the in-process
// broker: SIGTERM is logged when it arrives, with the --shutdown-timeout
// the relay was given (a readable duration, not nanoseconds), and the relay
// exits 0.
func TestRelayLogsTheSignal(t *testing.T) {
	t.Parallel()
	db := "sqlite://" + filepath.Join(t.TempDir(), "app.db")
	if r := runCLI(t, nil, "migrate", "up", "--db-url", db); r.code != 0 {
		t.Fatalf("%+v", r)
	}
	relay := command(nil, "relay", "--db-url", db, "--broker-url", "memory://signals", "--shutdown-timeout", "3s")
	stderr, err := relay.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := relay.Start(); err != nil {
		t.Fatal(err)
	}
	defer relay.Process.Kill() //nolint:errcheck // the relay may have exited
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	waitLine := func(what string) string {
		t.Helper()
		deadline := time.After(60 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("the relay exited before logging %q", what)
				}
				if strings.Contains(l, what) {
					return l
				}
			case <-deadline:
				t.Fatalf("no log line with %q", what)
			}
		}
	}
	waitLine("relay starting")
	if err := relay.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	l := waitLine("stopping")
	if !strings.Contains(l, `"shutdown_timeout":"3s"`) || !strings.Contains(l, "terminated") {
		t.Fatalf("stop log line: %s", l)
	}
	if err := relay.Wait(); err != nil {
		t.Fatalf("relay exit: %v", err)
	}
}
