package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outboxkit/outboxkit/drivers/postgres"
	"github.com/outboxkit/outboxkit/drivers/postgres/pgtest"
	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

// TestCDCCommands runs `outbox relay --mode cdc` and `outbox cdc
// status|create|drop` against a cluster with wal_level=logical.
func TestCDCCommands(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	db, err := sql.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	table := outboxtest.UniqueName("clicdc")
	slot := postgres.SlotName("", table)
	env := map[string]string{"OUTBOX_DB_URL": url, "OUTBOX_TABLE": table}
	t.Cleanup(func() {
		_, _ = db.Exec(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active`, slot)
		_, _ = db.Exec(`DROP PUBLICATION IF EXISTS "` + postgres.PublicationName("", table) + `"`)
		_, _ = db.Exec(`DROP TABLE IF EXISTS "` + table + `", "` + table + `_migrations", "` + table + `_cdc_state", "` + table + `_acks"`)
	})
	if r := runCLI(t, env, "migrate", "up"); r.code != 0 {
		t.Fatalf("migrate up: %+v", r)
	}
	if r := runCLI(t, env, "cdc", "status"); r.code != 3 || !strings.Contains(r.stderr, slot) {
		t.Fatalf("status before create: want exit 3 naming %s, got %+v", slot, r)
	}
	if r := runCLI(t, env, "cdc", "create"); r.code != 0 || !strings.Contains(r.stdout, "created replication slot "+slot) {
		t.Fatalf("create: %+v", r)
	}
	drv, err := postgres.New(db, postgres.Config{Table: table})
	if err != nil {
		t.Fatal(err)
	}
	ob, err := outbox.New(drv, outbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range 5 {
		tx, _ := db.Begin()
		e := &outbox.Event{Type: "t", Topic: "cli.cdc", Key: "k", Payload: []byte(`{}`)}
		if err := ob.Insert(context.Background(), tx, e); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.ID)
	}
	relay := command(env, "relay", "--mode", "cdc", "--broker-url", "memory://")
	var logs strings.Builder
	relay.Stderr = &logs
	if err := relay.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = relay.Process.Kill(); _ = relay.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		page, err := ob.List(context.Background(), outbox.ListFilter{Status: outbox.StatusDelivered})
		if err == nil && len(page.Events) == len(ids) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the CDC relay did not deliver the events; its log:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	r := runCLI(t, env, "cdc", "status", "-o", "json")
	var st map[string]any
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil || st["slot"] != slot || st["active"] != true || st["confirmed_lsn"] == "" {
		t.Fatalf("status while the relay streams: %+v", r)
	}
	if r := runCLI(t, env, "cdc", "drop"); r.code == 0 {
		t.Fatalf("drop of the slot a relay streams from succeeded: %+v", r)
	}
	_ = relay.Process.Signal(syscall.SIGTERM)
	_ = relay.Wait()
	if !strings.Contains(logs.String(), `"mode":"stream"`) {
		t.Fatalf("the relay did not run in stream mode; its log:\n%s", logs.String())
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		r := runCLI(t, env, "cdc", "drop")
		if r.code == 0 && strings.Contains(r.stdout, "dropped replication slot "+slot) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("drop after the relay stopped: %+v", r)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r := runCLI(t, env, "cdc", "drop"); r.code != 3 || !strings.Contains(r.stderr, slot) {
		t.Fatalf("drop of a missing slot: want exit 3 naming %s, got %+v", slot, r)
	}
}

// TestCDCModeErrors: the CDC relay refuses other databases and a server
// without wal_level=logical, saying how to enable it.
func TestCDCModeErrors(t *testing.T) {
	t.Parallel()
	if r := runCLI(t, map[string]string{"OUTBOX_DB_URL": "sqlite:///tmp/x.db"}, "relay", "--mode", "cdc", "--broker-url", "memory://"); r.code != 2 || !strings.Contains(r.stderr, "--mode cdc: PostgreSQL only") {
		t.Fatalf("sqlite: %+v", r)
	}
	if r := runCLI(t, nil, "relay", "--mode", "fast", "--broker-url", "memory://", "--db-url", "postgres://x/y"); r.code != 2 || !strings.Contains(r.stderr, `--mode "fast"`) {
		t.Fatalf("bad mode: %+v", r)
	}
	table, db, _ := setupDB(t)
	var level string
	if err := db.QueryRow("SHOW wal_level").Scan(&level); err != nil || level == "logical" {
		t.Skipf("skipped: the server at OUTBOX_TEST_POSTGRES_URL runs wal_level=%q (%v)", level, err)
	}
	env := map[string]string{"OUTBOX_DB_URL": outboxtest.PostgresURL(), "OUTBOX_TABLE": table}
	r := runCLI(t, env, "relay", "--mode", "cdc", "--broker-url", "memory://")
	if r.code == 0 || !strings.Contains(r.stderr, "ALTER SYSTEM SET wal_level = logical") {
		t.Fatalf("wal_level=replica: want the error saying how to enable logical, got %+v", r)
	}
}
