package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	_ "github.com/outboxkit/outboxkit/brokers/amqp"        // amqp:// for OUTBOX_BROKER_URL
	_ "github.com/outboxkit/outboxkit/brokers/redisstream" // redis:// for OUTBOX_BROKER_URL
	"github.com/outboxkit/outboxkit/drivers/mysql"
	"github.com/outboxkit/outboxkit/drivers/postgres"
	"github.com/outboxkit/outboxkit/drivers/sqlite"
	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxbroker"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// config is one run of the scenario.
type config struct {
	// DBURL is a postgres:// URL; empty means a temporary SQLite file.
	DBURL string
	// BrokerURL is a nats:// URL; empty means an embedded NATS server.
	BrokerURL string
	// Phases is how many invoices each writer attempts in each of the three
	// phases (relay 1 running, no relay, relay 2 running).
	Phases [3]int
	// Writers is how many goroutines write invoices concurrently.
	Writers int
	// RejectEvery rolls back every n-th invoice (a failed business check
	// after the event was written in the transaction).
	RejectEvery int
	// LostAckEvery makes the consumer withhold the ack of every n-th applied
	// invoice, as if it crashed right after committing: the broker redelivers
	// it and the consumer must skip it.
	LostAckEvery int
	// Resend is how many delivered events the operator resends at the end
	// (Outbox.Retry); the broker drops them as duplicates by Nats-Msg-Id.
	Resend int
	// Progress, when set, receives a progress line while the scenario runs.
	Progress io.Writer
	// Timeout bounds the whole run.
	Timeout time.Duration
}

func defaultConfig() config {
	return config{
		Phases:       [3]int{25, 20, 25},
		Writers:      4,
		RejectEvery:  7,
		LostAckEvery: 25,
		Resend:       5,
		Timeout:      60 * time.Second,
	}
}

// invoice is the payload of an invoice.issued event.
type invoice struct {
	InvoiceID   string `json:"invoice_id"`
	Patient     string `json:"patient"`
	AmountCents int64  `json:"amount_cents"`
}

// env is everything one run builds and tears down.
type env struct {
	cfg     config
	suffix  string // makes names unique on shared servers
	db      *sql.DB
	ledger  *sql.DB // the consumer's own database
	ob      *outbox.Outbox
	drv     outboxdriver.Driver
	tables  struct{ invoices, processed, ledger string }
	subject string
	stream  string
	js      nats.JetStreamContext // nil unless the broker is NATS JetStream
	mysql   bool                  // MySQL: ? placeholders, INSERT IGNORE
	pub     message.Publisher
	sub     message.Subscriber

	cleanups []func()

	// Writer side.
	mu         sync.Mutex
	committed  map[string]invoice // by event id
	rolledBack map[string]invoice // by event id
	written    atomic.Int64

	// Relay side (from RelayConfig.Observer).
	published   atomic.Int64
	publishedBy [2]atomic.Int64
	publishes   map[string]int // by event id

	// Consumer side.
	received, applied, dedup, lostAcks, consumerErrs atomic.Int64
}

func (e *env) cleanup(f func()) { e.cleanups = append(e.cleanups, f) }

// sql adapts a statement written with $n placeholders and ON CONFLICT DO
// NOTHING (PostgreSQL and SQLite) to MySQL.
func (e *env) sql(q string) string {
	if !e.mysql {
		return q
	}
	q = placeholderRe.ReplaceAllString(q, "?")
	if strings.HasSuffix(q, " ON CONFLICT DO NOTHING") {
		q = "INSERT IGNORE" + strings.TrimPrefix(strings.TrimSuffix(q, " ON CONFLICT DO NOTHING"), "INSERT")
	}
	return q
}

var placeholderRe = regexp.MustCompile(`\$[0-9]+`)

// run plays the whole scenario and returns its summary.
func run(ctx context.Context, cfg config) (*Summary, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	start := time.Now()
	e := &env{
		cfg:        cfg,
		suffix:     fmt.Sprintf("%d_%04d", os.Getpid(), rand.IntN(10000)),
		committed:  map[string]invoice{},
		rolledBack: map[string]invoice{},
		publishes:  map[string]int{},
	}
	defer func() {
		for i := len(e.cleanups) - 1; i >= 0; i-- {
			e.cleanups[i]()
		}
	}()
	sum := &Summary{}
	if err := e.setupDB(ctx, sum); err != nil {
		return nil, err
	}
	if err := e.setupBroker(ctx, sum); err != nil {
		return nil, err
	}
	if err := e.play(ctx, sum); err != nil {
		return nil, err
	}
	sum.Elapsed = time.Since(start)
	return sum, nil
}

func (e *env) setupDB(ctx context.Context, sum *Summary) error {
	e.tables.invoices, e.tables.processed, e.tables.ledger = "invoices", "processed_events", "ledger"
	if strings.HasPrefix(e.cfg.DBURL, "mysql://") {
		dsn, err := mysql.DSNFromURL(e.cfg.DBURL)
		if err != nil {
			return err
		}
		db, err := mysql.Open(dsn)
		if err != nil {
			return fmt.Errorf("open OUTBOX_DB_URL: %w", err)
		}
		e.cleanup(func() { db.Close() })
		if err := db.PingContext(ctx); err != nil {
			return fmt.Errorf("OUTBOX_DB_URL unreachable: %w", err)
		}
		p := "qs_" + e.suffix + "_"
		e.tables.invoices, e.tables.processed, e.tables.ledger = p+"invoices", p+"processed", p+"ledger"
		drv, err := mysql.New(db, mysql.Config{Table: p + "outbox"})
		if err != nil {
			return err
		}
		e.cleanup(func() {
			for _, t := range []string{e.tables.invoices, e.tables.processed, e.tables.ledger, p + "outbox", p + "outbox_migrations", p + "outbox_relay_lock"} {
				_, _ = db.Exec("DROP TABLE IF EXISTS `" + t + "`")
			}
		})
		e.db, e.ledger, e.drv, e.mysql = db, db, drv, true
		sum.Database = "MySQL/MariaDB (OUTBOX_DB_URL), outbox table " + drv.Table()
	} else if e.cfg.DBURL != "" {
		if !strings.HasPrefix(e.cfg.DBURL, "postgres://") && !strings.HasPrefix(e.cfg.DBURL, "postgresql://") {
			return errors.New("OUTBOX_DB_URL must be a postgres:// or mysql:// URL (unset it to use the embedded SQLite)")
		}
		db, err := sql.Open("postgres", e.cfg.DBURL)
		if err != nil {
			return fmt.Errorf("open OUTBOX_DB_URL: %w", err)
		}
		e.cleanup(func() { db.Close() })
		if err := db.PingContext(ctx); err != nil {
			return fmt.Errorf("OUTBOX_DB_URL unreachable: %w", err)
		}
		// A shared server: every table of this run gets a unique name and is
		// dropped at the end. The consumer's tables live in the same database
		// here, but it only ever touches them in its own transactions.
		p := "qs_" + e.suffix + "_"
		e.tables.invoices, e.tables.processed, e.tables.ledger = p+"invoices", p+"processed", p+"ledger"
		drv, err := postgres.New(db, postgres.Config{Table: p + "outbox"})
		if err != nil {
			return err
		}
		e.cleanup(func() {
			_, _ = db.Exec(fmt.Sprintf(`DROP TABLE IF EXISTS %s, %s, %s, "%soutbox", "%soutbox_migrations"`,
				e.tables.invoices, e.tables.processed, e.tables.ledger, p, p))
		})
		e.db, e.ledger, e.drv = db, db, drv
		sum.Database = "PostgreSQL (OUTBOX_DB_URL), outbox table " + drv.Table()
	} else {
		dir, err := os.MkdirTemp("", "outboxkit-quickstart-*")
		if err != nil {
			return err
		}
		e.cleanup(func() { os.RemoveAll(dir) })
		db, err := sqlite.Open(filepath.Join(dir, "billing.db"))
		if err != nil {
			return err
		}
		e.cleanup(func() { db.Close() })
		ledger, err := sqlite.Open(filepath.Join(dir, "ledger.db"))
		if err != nil {
			return err
		}
		e.cleanup(func() { ledger.Close() })
		drv, err := sqlite.New(db, sqlite.Config{})
		if err != nil {
			return err
		}
		e.db, e.ledger, e.drv = db, ledger, drv
		sum.Database = "SQLite (embedded), " + filepath.Join(dir, "billing.db")
	}
	ob, err := outbox.New(e.drv, outbox.Config{})
	if err != nil {
		return err
	}
	if err := ob.Migrate(ctx); err != nil {
		return err
	}
	e.ob = ob
	// The DDL below is portable between SQLite, PostgreSQL and MySQL.
	for _, q := range []struct {
		db  *sql.DB
		ddl string
	}{
		{e.db, `CREATE TABLE IF NOT EXISTS ` + e.tables.invoices + ` (
			id VARCHAR(64) PRIMARY KEY, patient TEXT NOT NULL, amount_cents BIGINT NOT NULL, issued_at TEXT NOT NULL)`},
		{e.ledger, `CREATE TABLE IF NOT EXISTS ` + e.tables.processed + ` (
			event_id VARCHAR(64) PRIMARY KEY, processed_at TEXT NOT NULL)`},
		{e.ledger, `CREATE TABLE IF NOT EXISTS ` + e.tables.ledger + ` (
			invoice_id VARCHAR(64) PRIMARY KEY, patient TEXT NOT NULL, amount_cents BIGINT NOT NULL, event_id TEXT NOT NULL)`},
	} {
		if _, err := q.db.ExecContext(ctx, q.ddl); err != nil {
			return fmt.Errorf("create business tables: %w", err)
		}
	}
	return nil
}

func (e *env) setupBroker(ctx context.Context, sum *Summary) error {
	url := e.cfg.BrokerURL
	e.subject = "quickstart." + e.suffix + ".invoice.issued"
	if url != "" && !strings.HasPrefix(url, "nats://") {
		// Any other broker module, opened by URL (amqp://, redis://, kafka://).
		b, err := outboxbroker.Open(ctx, url, outboxbroker.Options{ConsumerGroup: "quickstart_" + e.suffix})
		if err != nil {
			return fmt.Errorf("OUTBOX_BROKER_URL: %w", err)
		}
		e.cleanup(func() { b.Close() })
		if b.Subscriber == nil {
			return fmt.Errorf("OUTBOX_BROKER_URL: broker %s has no subscriber", outboxbroker.Redact(url))
		}
		e.pub, e.sub = b.Publisher, b.Subscriber
		sum.Broker = "OUTBOX_BROKER_URL " + outboxbroker.Redact(url)
		return nil
	}
	if url == "" {
		dir, err := os.MkdirTemp("", "outboxkit-quickstart-nats-*")
		if err != nil {
			return err
		}
		e.cleanup(func() { os.RemoveAll(dir) })
		ns, err := server.NewServer(&server.Options{
			ServerName: "quickstart",
			Host:       "127.0.0.1",
			Port:       server.RANDOM_PORT,
			JetStream:  true,
			StoreDir:   dir,
			NoLog:      true,
			NoSigs:     true,
		})
		if err != nil {
			return fmt.Errorf("embedded NATS: %w", err)
		}
		go ns.Start()
		if !ns.ReadyForConnections(10 * time.Second) {
			ns.Shutdown()
			return errors.New("embedded NATS: not ready after 10s")
		}
		e.cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
		url = ns.ClientURL()
		sum.Broker = "NATS JetStream (embedded, in-process), " + url
	} else {
		sum.Broker = "NATS JetStream (OUTBOX_BROKER_URL), " + url
	}

	nc, err := nats.Connect(url, nats.Name("quickstart-admin"))
	if err != nil {
		return fmt.Errorf("connect to NATS: %w", err)
	}
	e.cleanup(nc.Close)
	js, err := nc.JetStream()
	if err != nil {
		return err
	}
	e.js = js
	// Topology is declared explicitly (AutoProvision off: it costs a
	// StreamInfo round trip on every publish). The Duplicates window is
	// where JetStream drops a republished Nats-Msg-Id.
	e.stream = "QUICKSTART_" + e.suffix
	if _, err := js.AddStream(&nats.StreamConfig{
		Name: e.stream, Subjects: []string{e.subject}, Storage: nats.FileStorage, Duplicates: 2 * time.Minute,
	}, nats.Context(ctx)); err != nil {
		return fmt.Errorf("create stream %s: %w", e.stream, err)
	}
	if e.cfg.BrokerURL != "" {
		e.cleanup(func() { _ = js.DeleteStream(e.stream) })
	}

	pub, err := wmnats.NewPublisher(wmnats.PublisherConfig{
		URL:         url,
		NatsOptions: []nats.Option{nats.Name("quickstart-relay")},
		// TrackMsgId: Nats-Msg-Id = message UUID = outbox event id.
		JetStream: wmnats.JetStreamConfig{TrackMsgId: true},
	}, watermill.NopLogger{})
	if err != nil {
		return fmt.Errorf("NATS publisher: %w", err)
	}
	e.cleanup(func() { pub.Close() })
	e.pub = pub

	sub, err := wmnats.NewSubscriber(wmnats.SubscriberConfig{
		URL:            url,
		NatsOptions:    []nats.Option{nats.Name("quickstart-ledger")},
		AckWaitTimeout: 30 * time.Second,
		CloseTimeout:   5 * time.Second,
		JetStream: wmnats.JetStreamConfig{
			DurablePrefix:    "ledger",
			SubscribeOptions: []nats.SubOpt{nats.DeliverAll(), nats.AckExplicit(), nats.ManualAck()},
		},
	}, watermill.NopLogger{})
	if err != nil {
		return fmt.Errorf("NATS subscriber: %w", err)
	}
	e.cleanup(func() { sub.Close() })
	e.sub = sub
	return nil
}

// startRelay runs relay number n (0 or 1) until the returned stop is called.
func (e *env) startRelay(n int) (stop func() error, err error) {
	r, err := outbox.NewRelay(e.drv, e.pub, outbox.RelayConfig{
		ID:           fmt.Sprintf("quickstart-relay-%d", n+1),
		BatchSize:    50,
		PollInterval: 50 * time.Millisecond,
		Observer: func(o outbox.Outcome) {
			if o.Err != nil {
				return
			}
			e.published.Add(1)
			e.publishedBy[n].Add(1)
			e.mu.Lock()
			e.publishes[o.EventID]++
			e.mu.Unlock()
		},
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	var runErr error
	return func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}, nil
}

// writeInvoices has each writer attempt n invoices, one transaction each.
func (e *env) writeInvoices(ctx context.Context, n int, next *atomic.Int64) error {
	errs := make(chan error, e.cfg.Writers)
	var wg sync.WaitGroup
	for range e.cfg.Writers {
		wg.Go(func() {
			for range n {
				if err := e.writeOne(ctx, int(next.Add(1))); err != nil {
					errs <- err
					return
				}
				time.Sleep(time.Duration(5+rand.IntN(15)) * time.Millisecond)
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// writeOne is the service's business transaction: the invoice row and its
// event are written together, and either both commit or neither does.
func (e *env) writeOne(ctx context.Context, number int) error {
	inv := invoice{
		InvoiceID:   fmt.Sprintf("INV-%05d", number),
		Patient:     fmt.Sprintf("patient-%02d", number%12),
		AmountCents: int64(1500 + rand.IntN(20000)),
	}
	tx, err := e.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	if _, err := tx.ExecContext(ctx, e.sql(`INSERT INTO `+e.tables.invoices+` (id, patient, amount_cents, issued_at) VALUES ($1, $2, $3, $4)`),
		inv.InvoiceID, inv.Patient, inv.AmountCents, time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
		return fmt.Errorf("insert invoice: %w", err)
	}
	ev, err := outbox.NewJSONEvent("invoice.issued", e.subject, inv.Patient, inv)
	if err != nil {
		return err
	}
	if err := e.ob.Insert(ctx, tx, ev); err != nil {
		return err
	}
	e.written.Add(1)
	if number%e.cfg.RejectEvery == 0 {
		// A business check fails after the event was written: roll back. The
		// invoice and its event disappear together; nothing is published.
		if err := tx.Rollback(); err != nil {
			return err
		}
		e.mu.Lock()
		e.rolledBack[ev.ID] = inv
		e.mu.Unlock()
		return nil
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit invoice: %w", err)
	}
	e.mu.Lock()
	e.committed[ev.ID] = inv
	e.mu.Unlock()
	return nil
}

// consume is the downstream service: it applies each invoice to its ledger
// once, in its own transaction, keyed by the message UUID (= event id).
func (e *env) consume(msgs <-chan *message.Message) {
	for msg := range msgs {
		e.received.Add(1)
		applied, err := e.applyOnce(msg)
		switch {
		case err != nil:
			e.consumerErrs.Add(1)
			msg.Nack() // redelivered; the processed-ids table keeps it harmless
		case !applied:
			e.dedup.Add(1)
			msg.Ack()
		case e.applied.Add(1)%int64(e.cfg.LostAckEvery) == 0:
			// Simulated crash between commit and ack: the broker redelivers.
			e.lostAcks.Add(1)
			msg.Nack()
		default:
			msg.Ack()
		}
	}
}

func (e *env) applyOnce(msg *message.Message) (applied bool, err error) {
	ctx := context.Background()
	tx, err := e.ledger.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	res, err := tx.ExecContext(ctx, e.sql(`INSERT INTO `+e.tables.processed+` (event_id, processed_at) VALUES ($1, $2) ON CONFLICT DO NOTHING`),
		msg.UUID, time.Now().UTC().Format(time.RFC3339Nano))
	if err != nil {
		return false, err
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return false, err // already processed: a duplicate
	}
	var inv invoice
	if err := (&outbox.Event{ID: msg.UUID, Type: "invoice.issued", Payload: msg.Payload}).DecodeJSON(&inv); err != nil {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, e.sql(`INSERT INTO `+e.tables.ledger+` (invoice_id, patient, amount_cents, event_id) VALUES ($1, $2, $3, $4)`),
		inv.InvoiceID, inv.Patient, inv.AmountCents, msg.UUID); err != nil {
		return false, err
	}
	return true, tx.Commit()
}

// play runs the scenario: write with relay 1, stop it mid-stream, write with
// no relay, start relay 2, write more, drain, resend a few, and count.
func (e *env) play(ctx context.Context, sum *Summary) error {
	msgs, err := e.sub.Subscribe(ctx, e.subject)
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	consumerDone := make(chan struct{})
	go func() { e.consume(msgs); close(consumerDone) }()
	var consumerOnce sync.Once
	stopConsumer := func() { consumerOnce.Do(func() { e.sub.Close(); <-consumerDone }) }
	e.cleanup(stopConsumer)

	stopProgress := e.progress()
	defer stopProgress()

	var next atomic.Int64
	stop1, err := e.startRelay(0)
	if err != nil {
		return err
	}
	if err := e.writeInvoices(ctx, e.cfg.Phases[0], &next); err != nil {
		_ = stop1()
		return err
	}
	if err := waitFor(ctx, "relay 1's first delivery", func() bool { return e.publishedBy[0].Load() > 0 }); err != nil {
		_ = stop1()
		return err
	}
	// Stop relay 1 mid-stream: events of phase 1 may still be in flight.
	if err := stop1(); err != nil {
		return fmt.Errorf("relay 1: %w", err)
	}
	sum.DeliveredByRelay1 = e.publishedBy[0].Load()
	if err := e.writeInvoices(ctx, e.cfg.Phases[1], &next); err != nil {
		return err
	}
	st, err := e.ob.Stats(ctx)
	if err != nil {
		return err
	}
	sum.PendingWhileDown = st.Pending

	stop2, err := e.startRelay(1)
	if err != nil {
		return err
	}
	defer func() { _ = stop2() }()
	if err := e.writeInvoices(ctx, e.cfg.Phases[2], &next); err != nil {
		return err
	}

	e.mu.Lock()
	committed := len(e.committed)
	e.mu.Unlock()
	if err := waitFor(ctx, "every committed invoice applied", func() bool {
		st, err := e.ob.Stats(ctx)
		return err == nil && st.Pending == 0 && e.applied.Load() == int64(committed)
	}); err != nil {
		return err
	}

	// The operator resends a few delivered events (outbox retry): the relay
	// publishes them again with the same Nats-Msg-Id and JetStream drops them.
	resend := e.resendIDs()
	n, err := e.ob.Retry(ctx, resend...)
	if err != nil {
		return err
	}
	sum.Resent = n
	if err := waitFor(ctx, "resent events published", func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, id := range resend {
			if e.publishes[id] < 2 {
				return false
			}
		}
		st, err := e.ob.Stats(ctx)
		return err == nil && st.Pending == 0
	}); err != nil {
		return err
	}
	// Every withheld ack comes back as a redelivery the consumer skips.
	if err := waitFor(ctx, "redeliveries skipped", func() bool { return e.dedup.Load() >= e.lostAcks.Load() }); err != nil {
		return err
	}
	// Give a wrongly forwarded duplicate time to show up at the consumer,
	// then stop everything so that the counts below are final.
	time.Sleep(300 * time.Millisecond)
	if err := stop2(); err != nil {
		return fmt.Errorf("relay 2: %w", err)
	}
	stopConsumer()
	sum.DeliveredByRelay2 = e.publishedBy[1].Load()
	stopProgress()
	return e.count(ctx, sum)
}

// resendIDs picks the first Resend committed events.
func (e *env) resendIDs() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var ids []string
	for id := range e.committed {
		if len(ids) == e.cfg.Resend {
			break
		}
		ids = append(ids, id)
	}
	return ids
}

// count fills the summary from the databases and the broker, not from the
// in-memory counters alone, so that the checks prove something.
func (e *env) count(ctx context.Context, sum *Summary) error {
	e.mu.Lock()
	sum.Committed, sum.RolledBack = len(e.committed), len(e.rolledBack)
	var billed int64
	for _, inv := range e.committed {
		billed += inv.AmountCents
	}
	sum.BilledCents = billed
	e.mu.Unlock()
	sum.Written = int(e.written.Load())

	q := func(db *sql.DB, query string, dest ...any) error { return db.QueryRowContext(ctx, query).Scan(dest...) }
	if err := q(e.db, `SELECT count(*) FROM `+e.tables.invoices, &sum.InvoiceRows); err != nil {
		return err
	}
	for _, s := range []struct {
		status outbox.Status
		n      *int64
	}{{outbox.StatusPending, &sum.OutboxPending}, {outbox.StatusDelivered, &sum.OutboxDelivered}, {outbox.StatusDead, &sum.OutboxDead}} {
		f := outbox.ListFilter{Status: s.status, Limit: 10000}
		for {
			page, err := e.ob.List(ctx, f)
			if err != nil {
				return err
			}
			*s.n += int64(len(page.Events))
			if page.Next == 0 {
				break
			}
			f.After = page.Next
		}
	}

	sum.Published = e.published.Load()
	if e.js == nil {
		return e.countLedger(ctx, sum)
	}
	sum.JetStream = true
	info, err := e.js.StreamInfo(e.stream, nats.Context(ctx))
	if err != nil {
		return err
	}
	sum.StreamMessages = int64(info.State.Msgs)
	// Every stored message carries its event id as Nats-Msg-Id.
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		raw, err := e.js.GetMsg(e.stream, seq, nats.Context(ctx))
		if err != nil {
			return fmt.Errorf("read stream message %d: %w", seq, err)
		}
		e.mu.Lock()
		if _, ok := e.committed[raw.Header.Get(nats.MsgIdHdr)]; ok {
			sum.StreamWithEventID++
		}
		e.mu.Unlock()
	}
	return e.countLedger(ctx, sum)
}

// countLedger fills the consumer side of the summary from the ledger.
func (e *env) countLedger(ctx context.Context, sum *Summary) error {
	e.mu.Lock()
	defer e.mu.Unlock()

	sum.Received, sum.Applied = e.received.Load(), e.applied.Load()
	sum.Deduplicated, sum.LostAcks, sum.ConsumerErrors = e.dedup.Load(), e.lostAcks.Load(), e.consumerErrs.Load()
	rows, err := e.ledger.QueryContext(ctx, `SELECT event_id, amount_cents FROM `+e.tables.ledger)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var cents int64
		if err := rows.Scan(&id, &cents); err != nil {
			return err
		}
		sum.LedgerRows++
		sum.LedgerCents += cents
		if _, ok := e.rolledBack[id]; ok {
			sum.RolledBackApplied++
		}
		if _, ok := e.committed[id]; !ok {
			sum.UnknownApplied++
		}
	}
	return rows.Err()
}

// progress prints a progress line to cfg.Progress until stopped.
func (e *env) progress() (stop func()) {
	if e.cfg.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var once sync.Once
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprint(e.cfg.Progress, "\r"+strings.Repeat(" ", 78)+"\r")
				return
			case <-t.C:
				fmt.Fprintf(e.cfg.Progress, "\rwritten %4d · published %4d · applied %4d · duplicates skipped %3d ",
					e.written.Load(), e.published.Load(), e.applied.Load(), e.dedup.Load())
			}
		}
	}()
	return func() { once.Do(func() { close(done); <-finished }) }
}

func waitFor(ctx context.Context, what string, cond func() bool) error {
	for !cond() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out waiting for %s: %w", what, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}
