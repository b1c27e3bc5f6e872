package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/outboxkit/outboxkit/brokers/nats"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func scrape(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var publishedRe = regexp.MustCompile(`(?m)^outbox_published_total\{topic="([^"]+)",type="[^"]+"\} (\d+)$`)

// publishedFor sums outbox_published_total for one topic.
func publishedFor(metrics, topic string) int {
	n := 0
	for _, m := range publishedRe.FindAllStringSubmatch(metrics, -1) {
		if m[1] == topic {
			v, _ := strconv.Atoi(m[2])
			n += v
		}
	}
	return n
}

// receiver counts distinct event ids a real NATS subscriber receives.
type receiver struct {
	mu  sync.Mutex
	ids map[string]int
}

func receive(t *testing.T, ctx context.Context, cfg nats.Config, subject string) *receiver {
	t.Helper()
	sub, err := nats.NewSubscriber(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	msgs, err := sub.Subscribe(ctx, subject)
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{ids: map[string]int{}}
	go func() {
		for m := range msgs {
			r.mu.Lock()
			r.ids[m.UUID]++
			r.mu.Unlock()
			m.Ack()
		}
	}()
	return r
}

func (r *receiver) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ids)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// TestRelayBinaryAgainstNATS runs the real binary as a daemon against the
// real PostgreSQL and NATS JetStream: it drains a backlog while /metrics is
// scraped, its counters match what the broker delivered, events that died
// while their stream was missing are redelivered by `outbox retry`, and
// SIGTERM stops it cleanly.
func TestRelayBinaryAgainstNATS(t *testing.T) {
	t.Parallel()
	outboxtest.RequireService(t, outboxtest.NATS)
	table, db, ob := setupDB(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	subject := outboxtest.UniqueName("cli")
	stream := strings.ToUpper(subject)
	cfg := nats.Config{URL: outboxtest.NATSURL(), Durable: "clitest"}
	if err := nats.EnsureStream(ctx, cfg, nats.StreamConfig{Name: stream, Subjects: []string{subject, subject + "_late"}, MemoryStorage: true}); err != nil {
		t.Fatal(err)
	}
	const backlog = 2000
	ids := seedTopic(t, db, ob, subject, backlog)
	// These fail until their stream exists: no stream stores this subject yet.
	lateSubject := outboxtest.UniqueName("late")
	late := seedTopic(t, db, ob, lateSubject, 3)

	addr := freeAddr(t)
	env := map[string]string{"OUTBOX_DB_URL": outboxtest.PostgresURL(), "OUTBOX_TABLE": table,
		"OUTBOX_BROKER_URL": outboxtest.NATSURL() + "?stream=" + stream + "&publish_timeout=2s"}
	relay := command(env, "relay", "--notify", "--metrics-addr", addr, "--batch-size", "200", "--poll-interval", "20ms",
		"--max-attempts", "2", "--backoff-min", "10ms", "--backoff-max", "20ms", "--log-level", "error", "--publish", "direct")
	stderr, _ := relay.StderrPipe()
	if err := relay.Start(); err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	logsDone := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
		}
		close(logsDone)
	}()
	exited := make(chan error, 1)
	go func() { <-logsDone; exited <- relay.Wait() }()
	defer relay.Process.Kill()

	got := receive(t, ctx, cfg, subject)
	// Scrape while draining: the counter never exceeds what the broker holds.
	sawMidDrain := false
	waitUntil(t, "backlog delivered", func() bool {
		if code, body := scrape(t, addr, "/metrics"); code == 200 {
			n := publishedFor(body, subject)
			sawMidDrain = sawMidDrain || (n > 0 && n < backlog)
		}
		return got.distinct() == backlog
	})
	var body string
	waitUntil(t, "metrics to count every publish", func() bool {
		_, body = scrape(t, addr, "/metrics")
		return publishedFor(body, subject) == backlog
	})
	if n := got.distinct(); n != backlog {
		t.Fatalf("broker delivered %d distinct events, metrics say %d published", n, publishedFor(body, subject))
	}
	t.Logf("scraped /metrics mid-drain: %v", sawMidDrain)
	for _, id := range ids[:3] {
		if got.ids[id] == 0 {
			t.Fatalf("event %s missing", id)
		}
	}
	if code, _ := scrape(t, addr, "/readyz"); code != 200 {
		t.Fatalf("readyz %d", code)
	}

	// The late events died (no stream); create their stream and retry them.
	waitUntil(t, "late events dead", func() bool {
		r := runCLI(t, env, "status", "-o", "json")
		return strings.Contains(r.stdout, `"dead": 3`)
	})
	r := runCLI(t, env, "list", "--status", "dead")
	if !strings.Contains(r.stdout, late[0]) || !strings.Contains(r.stdout, "nats: publish to") {
		t.Fatalf("dead list: %+v", r)
	}
	lateStream := strings.ToUpper(lateSubject)
	if err := nats.EnsureStream(ctx, cfg, nats.StreamConfig{Name: lateStream, Subjects: []string{lateSubject}, MemoryStorage: true}); err != nil {
		t.Fatal(err)
	}
	gotLate := receive(t, ctx, cfg, lateSubject)
	if r := runCLI(t, env, "retry", "--all-dead", "--yes"); r.code != 0 || !strings.Contains(r.stdout, "retried 3") {
		t.Fatalf("retry: %+v", r)
	}
	waitUntil(t, "retried events delivered", func() bool { return gotLate.distinct() == 3 })

	// SIGTERM: graceful stop, exit 0.
	if err := relay.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("relay exit: %v\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("relay did not stop on SIGTERM")
	}
	if r := runCLI(t, env, "status", "-o", "json"); !strings.Contains(r.stdout, `"pending": 0`) || !strings.Contains(r.stdout, `"dead": 0`) {
		t.Fatalf("final status: %+v", r)
	}
}

func TestRelayUnknownBroker(t *testing.T) {
	t.Parallel()
	table, _, _ := setupDB(t)
	r := runCLI(t, nil, "relay", "--db-url", outboxtest.PostgresURL(), "--table", table, "--broker-url", "mqtt://u:pw@host")
	if r.code != exitUsage || !strings.Contains(r.stderr, "nats") || strings.Contains(r.stderr, "pw@") {
		t.Fatalf("%+v", r)
	}
}

func TestRelayUnknownPublishPath(t *testing.T) {
	t.Parallel()
	table, _, _ := setupDB(t)
	r := runCLI(t, nil, "relay", "--db-url", outboxtest.PostgresURL(), "--table", table, "--broker-url", outboxtest.NATSURL(), "--publish", "batch")
	if r.code != exitUsage || !strings.Contains(r.stderr, `Publish "batch"`) {
		t.Fatalf("%+v", r)
	}
}

func TestRelayDeleteDeliveredPostgresOnly(t *testing.T) {
	t.Parallel()
	// Refused before anything is opened: no service needed.
	r := runCLI(t, nil, "relay", "--db-url", "mysql://root@127.0.0.1:3306/test", "--broker-url", "nats://127.0.0.1:4222", "--delete-delivered")
	if r.code != exitUsage || !strings.Contains(r.stderr, "--delete-delivered: PostgreSQL only") {
		t.Fatalf("%+v", r)
	}
}

// TestSetRelayGC: the relay's GOGC is relayGCPercent unless the
// environment sets one, which it then leaves alone.
func TestSetRelayGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	if got := setRelayGC(func(string) string { return "" }); got != "300" {
		t.Fatalf("setRelayGC without GOGC = %q, want 300", got)
	}
	if got := debug.SetGCPercent(100); got != relayGCPercent {
		t.Fatalf("GC percent after setRelayGC = %d, want %d", got, relayGCPercent)
	}
	env := func(k string) string {
		if k == "GOGC" {
			return "off"
		}
		return ""
	}
	if got := setRelayGC(env); got != "off" {
		t.Fatalf("setRelayGC with GOGC=off = %q, want off", got)
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("setRelayGC changed the GC percent to %d although GOGC was set", got)
	}
}
