package conformance

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outboxkit/framework/outbox"
)

// childEnv switches a re-executed test binary into subprocess-relay mode.
const childEnv = "OUTBOXKIT_CONFORMANCE_CHILD"

// childSpec tells the subprocess relay what to do.
type childSpec struct {
	Test      string // t.Name() of the test that called Run
	Table     string
	BrokerID  string
	Journal   string // file the child appends "gen id key" to after each ack
	Gen       int
	BatchSize int
	Lease     time.Duration

	// Optional settings; zero values keep the crash test's.
	Role           string        // relay id prefix; zero means "child"
	BrokerAddr     string        // publish through this address (a tcpproxy)
	PublishTimeout time.Duration // relay PublishTimeout
	MaxAttempts    int           // zero means 1000
	BackoffMax     time.Duration // zero means 1s
	AckSweep       time.Duration // relay AckSweepInterval; zero means its default
}

// runChildIfAsked runs the subprocess relay when this process was started
// by startChild for this cell; it never returns then (the parent kills it,
// or it exits when its stdin closes). It returns true when the process is a
// child of another cell (the test is skipped).
func runChildIfAsked(t *testing.T, h Harness) bool {
	raw := os.Getenv(childEnv)
	if raw == "" {
		return false
	}
	var spec childSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		t.Fatalf("conformance child: bad %s: %v", childEnv, err)
	}
	if spec.Test != t.Name() {
		t.Skip("conformance child: not this cell")
		return true
	}
	// The parent holds our stdin open; EOF means it is gone or done. Exit
	// without running cleanups: the parent owns the table and the stream.
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	db := openDB(t, h, h.Database.DSN)
	drv := newDriver(t, h, db, spec.Table)
	broker := h.Broker.Open(t, spec.BrokerID)
	f, err := os.OpenFile(spec.Journal, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	pub := &journal{inner: broker.NewPublisher(t, spec.BrokerAddr), f: f, gen: spec.Gen}
	r, err := outbox.NewRelay(drv, pub, outbox.RelayConfig{
		ID:               fmt.Sprintf("%s-%d-gen%d", cmp.Or(spec.Role, "child"), os.Getpid(), spec.Gen),
		BatchSize:        spec.BatchSize,
		LeaseDuration:    spec.Lease,
		PollInterval:     20 * time.Millisecond,
		PublishTimeout:   spec.PublishTimeout,
		MaxAttempts:      cmp.Or(spec.MaxAttempts, 1000),
		BackoffMin:       50 * time.Millisecond,
		BackoffMax:       cmp.Or(spec.BackoffMax, time.Second),
		Publish:          h.Publish,
		Concurrency:      h.Concurrency,
		AckSweepInterval: spec.AckSweep,
	})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("conformance", cmp.Or(spec.Role, "child"), "relay running, gen", spec.Gen)
	_ = r.Run(context.Background())
	select {} // unreachable: Run only returns on cancel
}

// journal records every acknowledged publish with one write(2) per message,
// which a SIGKILL cannot tear apart after it returned.
type journal struct {
	inner message.Publisher
	mu    sync.Mutex
	f     *os.File
	gen   int
}

func (j *journal) Publish(topic string, msgs ...*message.Message) error {
	if err := j.inner.Publish(topic, msgs...); err != nil {
		return err
	}
	return j.write(msgs)
}

// PublishAsync implements outbox.AsyncPublisher (see publishAsync).
func (j *journal) PublishAsync(topic string, msg *message.Message) (func(context.Context) error, error) {
	return publishAsync(j.inner, topic, msg, func() error { return j.write([]*message.Message{msg}) })
}

func (j *journal) write(msgs []*message.Message) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, m := range msgs {
		if _, err := fmt.Fprintf(j.f, "%d %s %s\n", j.gen, m.UUID, m.Metadata.Get(outbox.MetadataKey)); err != nil {
			return err
		}
	}
	return nil
}

func (j *journal) Close() error { return j.inner.Close() }

type journalEntry struct {
	gen     int
	id, key string
}

func readJournal(t testing.TB, path string) []journalEntry {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []journalEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e journalEntry
		parts := strings.Fields(sc.Text())
		if len(parts) < 2 {
			continue
		}
		if _, err := fmt.Sscan(parts[0], &e.gen); err != nil {
			continue
		}
		e.id = parts[1]
		if len(parts) > 2 {
			e.key = parts[2]
		}
		out = append(out, e)
	}
	return out
}

// child is a running subprocess relay.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{}
}

// runPattern turns a test name into a -test.run pattern matching exactly it.
func runPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

func startChild(t testing.TB, spec childSpec, logPath string) *child {
	t.Helper()
	raw, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run="+runPattern(spec.Test), "-test.count=1", "-test.timeout=0", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"="+string(raw))
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(c.done) }()
	t.Cleanup(func() { c.kill() })
	return c
}

// kill sends SIGKILL and waits for the process to be gone.
func (c *child) kill() {
	_ = c.cmd.Process.Kill()
	<-c.done
}

// stop asks the child to exit (stdin EOF) and waits, killing it after 10s.
func (c *child) stop() {
	_ = c.stdin.Close()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.kill()
	}
}
