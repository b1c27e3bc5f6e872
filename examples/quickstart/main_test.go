package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

func runScenario(t *testing.T, cfg config) *Summary {
	t.Helper()
	sum, err := run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	sum.Print(&out)
	t.Log("\n" + out.String())
	if problems := sum.Check(); len(problems) > 0 {
		t.Fatalf("the numbers do not add up:\n%s", strings.Join(problems, "\n"))
	}
	return sum
}

// TestQuickstartEmbedded runs the README's first command's scenario: SQLite
// and an embedded NATS server, no external service.
func TestQuickstartEmbedded(t *testing.T) {
	t.Parallel()
	sum := runScenario(t, defaultConfig())
	if !strings.Contains(sum.Database, "SQLite") || !strings.Contains(sum.Broker, "embedded") {
		t.Fatalf("not the embedded setup: %s / %s", sum.Database, sum.Broker)
	}
	if sum.Committed+sum.RolledBack != 4*(25+20+25) || sum.Resent != 5 {
		t.Fatalf("scenario shape: committed %d rolled back %d resent %d", sum.Committed, sum.RolledBack, sum.Resent)
	}
}

// TestQuickstartPostgresNATS runs the same scenario on the real services
// (OUTBOX_TEST_POSTGRES_URL, OUTBOX_TEST_NATS_URL), as OUTBOX_DB_URL and
// OUTBOX_BROKER_URL would.
func TestQuickstartPostgresNATS(t *testing.T) {
	t.Parallel()
	outboxtest.RequireService(t, outboxtest.Postgres, outboxtest.NATS)
	cfg := defaultConfig()
	cfg.DBURL, cfg.BrokerURL = outboxtest.PostgresURL(), outboxtest.NATSURL()
	sum := runScenario(t, cfg)
	if !strings.Contains(sum.Database, "PostgreSQL") || strings.Contains(sum.Broker, "embedded") {
		t.Fatalf("not the external setup: %s / %s", sum.Database, sum.Broker)
	}
}

// TestQuickstartMySQLRabbitMQ runs the scenario on MariaDB/MySQL and
// RabbitMQ (a broker without native dedup: the consumer's inbox
// table absorbs every republished event).
func TestQuickstartMySQLRabbitMQ(t *testing.T) {
	t.Parallel()
	outboxtest.RequireService(t, outboxtest.MySQL, outboxtest.AMQP)
	dsn, err := gomysql.ParseDSN(outboxtest.MySQLDSN())
	if err != nil {
		t.Fatal(err)
	}
	cfg := defaultConfig()
	cfg.DBURL = "mysql://" + dsn.User + ":" + dsn.Passwd + "@" + dsn.Addr + "/" + dsn.DBName
	cfg.BrokerURL = outboxtest.AMQPURL()
	sum := runScenario(t, cfg)
	if !strings.Contains(sum.Database, "MySQL") || !strings.Contains(sum.Broker, "amqp://") {
		t.Fatalf("not the external setup: %s / %s", sum.Database, sum.Broker)
	}
	if sum.Deduplicated < sum.LostAcks+sum.Resent {
		t.Fatalf("deduplicated %d, want at least withheld acks %d + resent %d", sum.Deduplicated, sum.LostAcks, sum.Resent)
	}
}

// TestCheckCatchesBadNumbers makes sure the summary check can fail.
func TestCheckCatchesBadNumbers(t *testing.T) {
	t.Parallel()
	good := Summary{
		Written: 10, Committed: 8, RolledBack: 2, InvoiceRows: 8, BilledCents: 800,
		OutboxDelivered: 8, PendingWhileDown: 3, DeliveredByRelay1: 4, DeliveredByRelay2: 5, Published: 9, Resent: 1,
		JetStream: true, StreamMessages: 8, StreamWithEventID: 8,
		Received: 9, Applied: 8, Deduplicated: 1, LostAcks: 1, LedgerRows: 8, LedgerCents: 800,
	}
	if p := good.Check(); len(p) != 0 {
		t.Fatalf("consistent summary rejected: %v", p)
	}
	for name, mutate := range map[string]func(*Summary){
		"an invoice not applied":       func(s *Summary) { s.Applied--; s.Received--; s.LedgerRows--; s.LedgerCents -= 100 },
		"a rolled-back one applied":    func(s *Summary) { s.RolledBackApplied = 1 },
		"a duplicate in the stream":    func(s *Summary) { s.StreamMessages++ },
		"an event left pending":        func(s *Summary) { s.OutboxPending = 1 },
		"a redelivery not skipped":     func(s *Summary) { s.Received++ },
		"ledger amount differs":        func(s *Summary) { s.LedgerCents++ },
		"written does not add up":      func(s *Summary) { s.Written++ },
		"an invoice row without event": func(s *Summary) { s.InvoiceRows++ },
	} {
		s := good
		mutate(&s)
		if len(s.Check()) == 0 {
			t.Errorf("%s: not caught", name)
		}
	}
}

func TestBadURLs(t *testing.T) {
	t.Parallel()
	for _, cfg := range []config{
		{DBURL: "oracle://root@localhost/test"},
		{BrokerURL: "mqtt://localhost"},
	} {
		c := defaultConfig()
		c.DBURL, c.BrokerURL = cfg.DBURL, cfg.BrokerURL
		if _, err := run(context.Background(), c); err == nil || (!strings.Contains(err.Error(), "must be a") && !strings.Contains(err.Error(), "unknown broker URL scheme")) {
			t.Errorf("%+v: want a clear error, got %v", cfg, err)
		}
	}
}
