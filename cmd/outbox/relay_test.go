package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/outboxkit/outboxkit/framework/outboxbroker"
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

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRelayCommand(t *testing.T) {
	table, db, ob := setupDB(t)
	ids := seed(t, db, ob, 5)
	brokerURL := "memory://" + outboxtest.UniqueName("cli")
	broker, err := outboxbroker.Open(context.Background(), brokerURL, outboxbroker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	msgs, err := broker.Subscriber.Subscribe(context.Background(), "invoices")
	if err != nil {
		t.Fatal(err)
	}

	addr := freeAddr(t)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan result, 1)
	go func() {
		var out, errb strings.Builder
		code := run(ctx, []string{"relay", "--db-url", outboxtest.PostgresURL(), "--table", table,
			"--broker-url", brokerURL, "--metrics-addr", addr, "--poll-interval", "20ms", "--log-level", "warn"},
			strings.NewReader(""), &out, &errb)
		done <- result{code, out.String(), errb.String()}
	}()

	got := map[string]bool{}
	timeout := time.After(30 * time.Second)
	for len(got) < len(ids) {
		select {
		case m := <-msgs:
			m.Ack()
			got[m.UUID] = true
		case r := <-done:
			t.Fatalf("relay exited early: %+v", r)
		case <-timeout:
			t.Fatalf("delivered %d of %d", len(got), len(ids))
		}
	}
	for _, id := range ids {
		if !got[id] {
			t.Fatalf("event %s not delivered", id)
		}
	}
	// Metrics and health are served on the requested address.
	var body string
	for range 100 {
		if _, body = httpGet(t, "http://"+addr+"/metrics"); strings.Contains(body, `outbox_published_total{topic="invoices",type="care.invoice.issued"} 5`) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(body, `outbox_published_total{topic="invoices",type="care.invoice.issued"} 5`) ||
		!strings.Contains(body, "outbox_relay_up 1") || !strings.Contains(body, "outbox_commit_to_publish_seconds_bucket") {
		t.Fatalf("metrics:\n%s", body)
	}
	if code, _ := httpGet(t, "http://"+addr+"/healthz"); code != 200 {
		t.Fatalf("healthz %d", code)
	}
	if code, b := httpGet(t, "http://"+addr+"/readyz"); code != 200 {
		t.Fatalf("readyz %d %s", code, b)
	}
	stop() // SIGTERM equivalent: drain and exit 0
	select {
	case r := <-done:
		if r.code != 0 {
			t.Fatalf("relay exit %d: %s", r.code, r.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("relay did not stop")
	}
	r := runCLI(t, nil, "status", "--db-url", outboxtest.PostgresURL(), "--table", table, "-o", "json")
	if !strings.Contains(r.stdout, `"pending": 0`) {
		t.Fatalf("after relay: %s", r.stdout)
	}
}

func TestRelayUnknownBroker(t *testing.T) {
	table, _, _ := setupDB(t)
	r := runCLI(t, nil, "relay", "--db-url", outboxtest.PostgresURL(), "--table", table, "--broker-url", "mqtt://u:pw@host")
	if r.code != exitUsage || !strings.Contains(r.stderr, "nats") || strings.Contains(r.stderr, "pw@") {
		t.Fatalf("%+v", r)
	}
}
