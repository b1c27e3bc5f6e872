package pgtest_test

import (
	"database/sql"
	"os"
	"testing"

	"github.com/outboxkit/outboxkit/drivers/postgres/pgtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}

func TestClusterHasLogicalWAL(t *testing.T) {
	u := pgtest.URL(t)
	db, err := sql.Open("postgres", u)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var level string
	if err := db.QueryRow("SHOW wal_level").Scan(&level); err != nil {
		t.Fatal(err)
	}
	if level != "logical" {
		t.Fatalf("wal_level = %q, want logical", level)
	}
	if err := pgtest.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow("SHOW wal_level").Scan(&level); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}
