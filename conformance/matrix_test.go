package conformance_test

import (
	"database/sql"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/outboxkit/outboxkit/conformance"
	"github.com/outboxkit/outboxkit/drivers/postgres"
	"github.com/outboxkit/outboxkit/drivers/postgres/pgtest"
	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// sqliteDirEnv names the directory of the SQLite cells' database files; the
// matrix sets it (to a temporary directory) when it is empty, so that the
// re-executed subprocess relays open the same files.
const sqliteDirEnv = "OUTBOX_TEST_SQLITE_DIR"

// matrixParallel is the -test.parallel the package uses unless the flag is
// given: the suite's tests mostly wait on servers (polls, outages, drains),
// so more of them than cores run well on a 2-core machine (the default is
// GOMAXPROCS). 8 ran the matrix in ~100 s but exhausted PostgreSQL's 100
// connections (the writer tests open 32 each) on a server shared with other
// test runs; 4 stays well below.
const matrixParallel = 4

// databases lists the database sides of the matrix. A new dialect adds one
// line here (and a constructor like conformance.Postgres()). cell names the
// cell, for databases that keep one file per cell.
func databases() []func(cell string) conformance.Database {
	return []func(string) conformance.Database{
		func(string) conformance.Database { return conformance.Postgres() },
		func(string) conformance.Database { return conformance.PostgresCDC() },
		func(string) conformance.Database { return conformance.MySQL() },
		func(cell string) conformance.Database {
			return conformance.SQLite(filepath.Join(os.Getenv(sqliteDirEnv), cell+".db"))
		},
	}
}

// brokers lists the broker sides of the matrix. brokers/memory is
// Watermill's gochannel, so it stands for conformance.GoChannel too.
func brokers() []conformance.Broker {
	return []conformance.Broker{
		conformance.NATS(),
		conformance.Kafka(),
		conformance.AMQP(),
		conformance.RedisStream(),
		conformance.Memory(),
	}
}

// reference is the broker whose cells run at full counts (one reference
// cell per database); every other cell runs light (Harness.Light).
const reference = "nats"

// TestMatrix runs the conformance suite on every database × broker cell.
func TestMatrix(t *testing.T) {
	run := func(h conformance.Harness) {
		t.Run(h.Name, func(t *testing.T) {
			t.Parallel()
			conformance.Run(t, h)
		})
	}
	for _, newDB := range databases() {
		for _, b := range brokers() {
			name := newDB("").Name + "_" + b.Name
			run(conformance.Harness{Name: name, Database: newDB(name), Broker: b, Light: b.Name != reference})
		}
		if newDB("").Name == "postgres_cdc" {
			continue // one publish path: the relay's stream mode runs PublishDirect
		}
		// The reference broker once more through the relay's other publish
		// path, Watermill's forwarder (the cells above use the default,
		// PublishDirect, over each broker's AsyncPublisher).
		name := newDB("").Name + "_" + reference + "_forwarder"
		run(conformance.Harness{Name: name, Database: newDB(name), Broker: referenceBroker(), Light: true, Publish: outbox.PublishForwarder})
	}
	run(deleteDeliveredCell())
	// The forwarder path over a broker whose Publish is synchronous
	// (RabbitMQ's confirm-per-publish), one batch at a time.
	run(conformance.Harness{Name: "postgres_amqp_forwarder", Database: conformance.Postgres(), Broker: conformance.AMQP(), Light: true, Publish: outbox.PublishForwarder, Concurrency: 1})
}

// deleteDeliveredCell is PostgreSQL × NATS with
// postgres.Config.DeleteDelivered (and the relay's defaults: PublishDirect,
// two batches open).
func deleteDeliveredCell() conformance.Harness {
	db := conformance.Postgres()
	db.DeletesDelivered = true
	db.NewDriver = func(sqlDB *sql.DB, table string) (outboxdriver.Driver, error) {
		return postgres.New(sqlDB, postgres.Config{Table: table, DeleteDelivered: true})
	}
	return conformance.Harness{Name: "postgres_nats_delete", Database: db, Broker: referenceBroker(), Light: true}
}

// referenceBroker returns the reference entry of brokers().
func referenceBroker() conformance.Broker {
	for _, b := range brokers() {
		if b.Name == reference {
			return b
		}
	}
	panic("no broker named " + reference)
}

// TestMain raises -test.parallel to matrixParallel unless it was given,
// prepares the SQLite directory, and prints (and, with
// OUTBOX_CONFORMANCE_SUMMARY, writes) the matrix summary at the end.
func TestMain(m *testing.M) {
	flag.Parse()
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if !given {
		_ = flag.Set("test.parallel", fmt.Sprint(matrixParallel))
	}
	cleanup := func() {}
	if os.Getenv(sqliteDirEnv) == "" {
		dir, err := os.MkdirTemp("", "outboxkit-conformance-sqlite-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		os.Setenv(sqliteDirEnv, dir)
		cleanup = func() { os.RemoveAll(dir) }
	}
	code := m.Run()
	cleanup()
	pgtest.Stop()
	if err := conformance.FinishMatrix("TestMatrix"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = max(code, 1)
	}
	os.Exit(code)
}
