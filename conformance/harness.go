package conformance

import (
	"database/sql"
	"os"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
	"github.com/outboxkit/outboxkit/framework/outboxtest/tcpproxy"
)

// Harness is one cell of the conformance matrix: a database with its outbox
// driver, and a broker. Run executes every contract test against it.
type Harness struct {
	// Name names the cell in test output and in the subprocess relay's
	// -test.run pattern, e.g. "postgres_nats".
	Name string

	// Database says how to reach the database and build the driver.
	Database Database

	// Broker says how to reach the broker and read back what it stored.
	Broker Broker

	// Light runs the heavy tests (the SIGKILL drain, the outages, the
	// out-of-order writers and the key-order tests) at the counts of
	// -short. Zero (false) means full counts. The matrix runs one reference
	// cell per database at full counts and the others light, to keep the
	// whole matrix within CI's time budget.
	Light bool

	// Publish is the outbox.RelayConfig.Publish of every relay the cell
	// runs; zero means the relay's default (PublishDirect).
	Publish outbox.PublishPath

	// Concurrency is the outbox.RelayConfig.Concurrency of every relay the
	// cell runs, unless a test sets its own; zero means the relay's
	// default (1). The crash test's duplicate bound grows with it.
	Concurrency int
}

// size picks an event count for this cell: short with -short or Light,
// full otherwise.
func (h Harness) size(short, full int) int {
	if h.Light {
		return short
	}
	return scale(short, full)
}

// Database describes the database side of a cell.
type Database struct {
	// Name is the dialect's short name, e.g. "postgres".
	Name string

	// Services are checked with outboxtest.RequireService before any test
	// runs (e.g. outboxtest.Postgres); empty checks nothing.
	Services []string

	// DriverName is the database/sql driver name to open DSN with, e.g.
	// "postgres" (lib/pq) or "mysql".
	DriverName string

	// DSN connects to the test database directly.
	DSN string

	// Addr is the database's host:port. With DSNVia it enables the
	// database-cut test (the relay's connections go through a tcpproxy) and
	// the unreachable-DSN test. Empty skips both.
	Addr string

	// DSNVia returns a DSN equal to DSN except that it dials addr (host:port)
	// instead of Addr. Nil skips the database-cut and unreachable-DSN tests.
	DSNVia func(addr string) string

	// NewDriver builds the outbox driver on db for the given table. It must
	// not touch the database (the suite calls MigrateUp itself) and must
	// return an error wrapping outbox.ErrInvalidConfig, naming the table
	// field, for an invalid table name.
	NewDriver func(db *sql.DB, table string) (outboxdriver.Driver, error)

	// NewDriverAt, when set, is used instead of NewDriver wherever the
	// suite builds a driver, with the DSN db was opened with: a driver
	// with a connection of its own (a CDC driver's replication connection)
	// then dials the same address, so the database-cut test cuts it too.
	NewDriverAt func(db *sql.DB, dsn, table string) (outboxdriver.Driver, error)

	// AfterMigrate, when set, runs on each test's driver once its table is
	// migrated, before any event is written (a CDC cell creates its
	// replication slot there, so that every event reaches the relay
	// through the stream). Nil does nothing.
	AfterMigrate func(drv outboxdriver.Driver) error

	// Require, when set, is called before any test of the cell runs: it
	// skips the cell (or fails it, when OUTBOX_TEST_REQUIRE demands the
	// database) when the database cannot be had, e.g. a test cluster that
	// did not start. Nil requires nothing beyond Services.
	Require func(t testing.TB)

	// DropTable removes the table and whatever its migrations created, after
	// each test. Nil leaves them behind.
	DropTable func(db *sql.DB, table string) error

	// SerialWriters is true when the database runs one write transaction at
	// a time (SQLite): ids are then assigned in commit order, so commits
	// out of id order cannot happen, and tests that hold dozens of write
	// transactions open at once only measure the queue for the lock. Those
	// tests are skipped with the reason. Zero (false) means writers run
	// concurrently.
	SerialWriters bool

	// LockTimeout is a statement that limits how long the session waits for
	// a row or table lock to about one second, e.g. PostgreSQL's
	// "SET lock_timeout = '1s'" or MySQL's "SET SESSION
	// innodb_lock_wait_timeout = 1". The C5 writer test runs its INSERTs on
	// such a session: an INSERT queued behind a relay's lock fails instead of
	// merely being slow. Empty skips that test.
	LockTimeout string

	// OneRelayStreams is true when only one relay at a time relays the
	// table (a CDC driver: relays share one replication slot, and the
	// others wait as hot standbys). The test of a healthy relay taking
	// other keys over from a stuck one then checks the writers only.
	OneRelayStreams bool

	// DeletesDelivered is true when the driver deletes events once delivered
	// instead of keeping them as history (postgres.Config.DeleteDelivered).
	// Tests that read a delivered event then expect it gone, and the resend
	// of a delivered event is skipped with the reason.
	DeletesDelivered bool
}

// Broker describes the broker side of a cell.
type Broker struct {
	// Name is the broker's short name, e.g. "nats".
	Name string

	// Services are checked with outboxtest.RequireService before any test
	// runs (e.g. outboxtest.NATS); empty checks nothing.
	Services []string

	// Features say what the broker promises; tests of promises it does not
	// make are skipped with the reason.
	Features Features

	// Addr is the broker's host:port, the target of the broker-cut test's
	// tcpproxy. Empty skips that test, unless the BrokerInstance implements
	// Proxied (a broker started per test); so does Features.Networked false.
	Addr string

	// Open returns the broker state for one test, identified by id (a fresh,
	// identifier-safe name: use it for the stream, topic or queue). Open is
	// called again with the same id in the subprocess relay of the SIGKILL
	// test, which must then publish to the same place. Resources are released
	// with t.Cleanup.
	Open func(t testing.TB, id string) BrokerInstance
}

// BrokerInstance is one test's view of a broker: a topic of its own, the
// publishers the relays use, and a reader of everything stored on the topic.
type BrokerInstance interface {
	// Topic is the destination the test's events use (Event.Topic).
	Topic() string

	// NewPublisher returns a publisher with the broker module's durable
	// defaults. A non-empty addr (host:port) is dialed instead of
	// Broker.Addr, so the suite can route the connection through a
	// tcpproxy. The suite never closes it; close it with t.Cleanup.
	NewPublisher(t testing.TB, addr string) message.Publisher

	// Consume delivers everything stored on Topic, from the beginning
	// (messages published before the call included), in the broker's order,
	// until the test ends. The suite drains the channel continuously.
	Consume(t testing.TB) <-chan Received
}

// Features say what a broker promises. A false field means "not promised":
// the tests that rely on it are skipped with the reason.
type Features struct {
	// NativeDedup is true when the broker itself drops a second publish of a
	// message id it already stored (NATS JetStream Nats-Msg-Id within the
	// stream's duplicate window) and Received.DedupID carries that id.
	NativeDedup bool

	// DedupSlot names where the broker's own message model carries the
	// event id (e.g. "AMQP message-id property"), as the broker module's
	// outboxbroker.Features.DedupSlot does. When it is non-empty,
	// Received.DedupID must be read from that slot and C3 checks that it
	// equals the event id. Empty means the broker has no such slot.
	DedupSlot string

	// PerKeyOrder is true when Consume yields messages of the same key
	// (metadata outbox_key) in the order they were acknowledged to the
	// publisher.
	PerKeyOrder bool

	// Networked is true when the broker is a server reachable over TCP at
	// Addr by other processes. False (in-memory brokers such as Watermill's
	// gochannel) skips the broker-cut tests, and the SIGKILL test then checks
	// the subprocess relay's publish journal only.
	Networked bool
}

// Proxied is an optional interface of BrokerInstance, for a broker that the
// instance starts itself (an in-process Kafka cluster) and that must be cut
// where it stands: Kafka clients reconnect to the addresses the cluster
// advertises, so a proxy the test puts in front of the bootstrap address
// would be bypassed. Such an instance runs its broker behind its own
// tcpproxy, advertises the proxy's address, and routes every client
// (publishers, the reader, the subprocess relay) through it; the broker-cut
// tests cut and stall that proxy instead of starting one on Broker.Addr.
type Proxied interface {
	// Proxy returns the proxy every connection to the instance's broker
	// goes through. The instance closes it with t.Cleanup.
	Proxy() *tcpproxy.Proxy
}

// notProxied is an optional interface of BrokerInstance, for a broker the
// instance cannot route through one proxy (an external Kafka cluster of
// several brokers): the broker-cut tests are skipped with its reason.
type notProxied interface {
	WhyNotProxied() string
}

// Received is one message read back from the broker.
type Received struct {
	// UUID is the Watermill message UUID: it must equal the event id.
	UUID string
	// DedupID is the id in the broker's native dedup slot (NATS
	// Nats-Msg-Id, AMQP message-id, Kafka header outbox_event_id, Redis
	// field outbox_event_id: Features.DedupSlot), or empty when the broker
	// has none.
	DedupID string
	// Payload is the message body.
	Payload []byte
	// Metadata are the message headers as Watermill metadata.
	Metadata map[string]string
}

// brokerProxy returns the proxy the broker-cut tests cut: the instance's own
// (Proxied) or a new one in front of Broker.Addr. It skips the test when
// there is neither.
func (e *env) brokerProxy(t *testing.T) *tcpproxy.Proxy {
	t.Helper()
	if pi, ok := e.broker.(Proxied); ok {
		return pi.Proxy()
	}
	if np, ok := e.broker.(notProxied); ok {
		skipf(t, "%s", np.WhyNotProxied())
	}
	if e.h.Broker.Addr == "" {
		skipf(t, "broker %s: no Addr, cannot route it through a proxy", e.h.Broker.Name)
	}
	p, err := tcpproxy.Start(e.h.Broker.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// childMode reports whether this process is a subprocess relay: broker sides
// then open what the parent test declared, without declaring or deleting.
func childMode() bool { return os.Getenv(childEnv) != "" }
