package main

import (
	"strings"
	"testing"
	"time"

	"github.com/outboxkit/outboxkit/framework/outboxtest"
	"github.com/outboxkit/outboxkit/framework/outboxtest/tcpproxy"
)

// TestReadyzAsksTheBroker: a NATS server that accepts connections but no
// longer answers (a stalled proxy in front of it) makes /readyz 503; a TCP
// connect alone, the check before, still succeeded.
func TestReadyzAsksTheBroker(t *testing.T) {
	t.Parallel()
	outboxtest.RequireService(t, outboxtest.NATS)
	table, _, _ := setupDB(t)
	proxy, err := tcpproxy.Start(strings.TrimPrefix(outboxtest.NATSURL(), "nats://"))
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	addr := freeAddr(t)
	relay := command(map[string]string{"OUTBOX_DB_URL": outboxtest.PostgresURL(), "OUTBOX_TABLE": table,
		"OUTBOX_BROKER_URL": "nats://" + proxy.Addr()}, "relay", "--metrics-addr", addr, "--log-level", "error")
	if err := relay.Start(); err != nil {
		t.Fatal(err)
	}
	defer relay.Process.Kill() //nolint:errcheck // test cleanup
	waitUntil(t, "ready", func() bool { code, _ := scrape(t, addr, "/readyz"); return code == 200 })
	proxy.Stall()
	var body string
	waitUntil(t, "not ready while the broker does not answer", func() bool {
		var code int
		code, body = scrape(t, addr, "/readyz")
		return code == 503
	})
	if !strings.Contains(body, "broker") {
		t.Fatalf("readyz body %q", body)
	}
	proxy.Restore()
	waitUntil(t, "ready again", func() bool { code, _ := scrape(t, addr, "/readyz"); return code == 200 })
}

// TestRelayRedisClosedPort: a Redis relay whose server does not answer exits
// 1 at start, as NATS, AMQP and Kafka relays do (the Redis client connects
// lazily: it used to start anyway).
func TestRelayRedisClosedPort(t *testing.T) {
	t.Parallel()
	table, _, _ := setupDB(t)
	start := time.Now()
	r := runCLI(t, nil, "relay", "--db-url", outboxtest.PostgresURL(), "--table", table, "--broker-url", "redis://:s3cret@127.0.0.1:1/0")
	if r.code != exitError || !strings.Contains(r.stderr, "PING") || strings.Contains(r.stderr, "s3cret") {
		t.Fatalf("code %d stderr %q after %s", r.code, r.stderr, time.Since(start))
	}
}
