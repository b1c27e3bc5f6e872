package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/outboxkit/outboxkit/drivers/mysql"
	"github.com/outboxkit/outboxkit/drivers/postgres"
	"github.com/outboxkit/outboxkit/drivers/postgres/pgtest"
	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

type result struct {
	code           int
	stdout, stderr string
}

// bin is the real outbox binary, built once by TestMain.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "outbox-cli")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "outbox")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the outbox binary: %v\n%s", err, out)
		os.Exit(1)
	}
	// `outbox conformance` execs the runner found next to it, as in a
	// release archive (the workspace resolves the conformance module).
	runner := filepath.Join(dir, conformanceBin)
	if out, err := exec.Command("go", "build", "-o", runner, "github.com/outboxkit/outboxkit/conformance/cmd/outbox-conformance").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the conformance runner: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	pgtest.Stop()
	os.Exit(code)
}

// command returns the real binary as a command with only env (plus PATH
// and HOME) in its environment.
func command(env map[string]string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	return cmd
}

// runCLI runs the real binary to completion.
func runCLI(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	cmd := command(env, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, out.String(), errb.String()}
}

// dialect is one database the CLI is tested on.
type dialect struct {
	name, service, url string
	open               func() (*sql.DB, error)
	newDriver          func(db *sql.DB, table string) (outboxdriver.Driver, error)
	quote              func(table string) string
	dead, oldDelivered string // UPDATE ... SET fragments, {T} = quoted table, ? / $1 = id
	drop               []string
}

func postgresDialect() dialect {
	return dialect{name: "postgres", service: outboxtest.Postgres, url: outboxtest.PostgresURL(),
		open: func() (*sql.DB, error) { return sql.Open("postgres", outboxtest.PostgresURL()) },
		newDriver: func(db *sql.DB, table string) (outboxdriver.Driver, error) {
			return postgres.New(db, postgres.Config{Table: table})
		},
		quote:        func(t string) string { return `"` + t + `"` },
		dead:         `UPDATE {T} SET status = 'dead', last_error = 'boom' WHERE id = $1`,
		oldDelivered: `UPDATE {T} SET status = 'delivered', delivered_at = now() - interval '8 days' WHERE id = $1`,
		drop:         []string{"", "_migrations", "_cdc_state", "_acks"},
	}
}

// mysqlURL turns the test DSN (go-sql-driver form) into the CLI's mysql:// URL.
func mysqlURL() string {
	cfg, err := gomysql.ParseDSN(outboxtest.MySQLDSN())
	if err != nil {
		panic(err)
	}
	u := "mysql://" + cfg.User
	if cfg.Passwd != "" {
		u += ":" + cfg.Passwd
	}
	return u + "@" + cfg.Addr + "/" + cfg.DBName
}

func mysqlDialect() dialect {
	return dialect{name: "mysql", service: outboxtest.MySQL, url: mysqlURL(),
		open: func() (*sql.DB, error) { return mysql.Open(outboxtest.MySQLDSN()) },
		newDriver: func(db *sql.DB, table string) (outboxdriver.Driver, error) {
			return mysql.New(db, mysql.Config{Table: table})
		},
		quote:        func(t string) string { return "`" + t + "`" },
		dead:         `UPDATE {T} SET status = 'dead', last_error = 'boom' WHERE id = ?`,
		oldDelivered: `UPDATE {T} SET status = 'delivered', delivered_at = UTC_TIMESTAMP(6) - INTERVAL 8 DAY WHERE id = ?`,
		drop:         []string{"", "_migrations", "_relay_lock", "_acks"},
	}
}

// setupDB migrates a fresh PostgreSQL table through the CLI.
func setupDB(t *testing.T) (string, *sql.DB, *outbox.Outbox) {
	t.Helper()
	return setupDialect(t, postgresDialect())
}

// setupDialect migrates a fresh table through the CLI and returns its name,
// the database and an Outbox on it for seeding.
func setupDialect(t *testing.T, d dialect) (string, *sql.DB, *outbox.Outbox) {
	t.Helper()
	outboxtest.RequireService(t, d.service)
	table := outboxtest.UniqueName("cli")
	db, err := d.open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, suffix := range d.drop {
			_, _ = db.Exec(`DROP TABLE IF EXISTS ` + d.quote(table+suffix))
		}
		if d.name == "postgres" {
			_, _ = db.Exec(`DROP PUBLICATION IF EXISTS ` + d.quote(postgres.PublicationName("", table)))
		}
		db.Close()
	})
	r := runCLI(t, nil, "migrate", "up", "--db-url", d.url, "--table", table)
	if r.code != 0 {
		t.Fatalf("migrate up: %d %s", r.code, r.stderr)
	}
	drv, err := d.newDriver(db, table)
	if err != nil {
		t.Fatal(err)
	}
	ob, _ := outbox.New(drv, outbox.Config{})
	return table, db, ob
}

func seed(t *testing.T, db *sql.DB, ob *outbox.Outbox, n int) []string {
	return seedTopic(t, db, ob, "invoices", n)
}

func seedTopic(t *testing.T, db *sql.DB, ob *outbox.Outbox, topic string, n int) []string {
	t.Helper()
	tx, _ := db.Begin()
	var ids []string
	for i := range n {
		e := &outbox.Event{Type: "care.invoice.issued", Topic: topic, Key: fmt.Sprintf("INV-%d", i), Payload: []byte(`{"amount":"1.00"}`)}
		if err := ob.Insert(context.Background(), tx, e); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.ID)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestAdminCommands(t *testing.T) {
	t.Parallel()
	for _, d := range []dialect{postgresDialect(), mysqlDialect()} {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			testAdminCommands(t, d)
		})
	}
}

func testAdminCommands(t *testing.T, d dialect) {
	table, db, ob := setupDialect(t, d)
	env := map[string]string{"OUTBOX_DB_URL": d.url, "OUTBOX_TABLE": table}
	ids := seed(t, db, ob, 3)

	t.Run("migrate status", func(t *testing.T) {
		r := runCLI(t, env, "migrate", "status")
		if r.code != 0 || !strings.Contains(r.stdout, "applied: [1") || !strings.Contains(r.stdout, "pending: []") {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("status json", func(t *testing.T) {
		r := runCLI(t, env, "status", "-o", "json")
		var s map[string]any
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &s) != nil || s["pending"] != float64(3) {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("list and paginate", func(t *testing.T) {
		r := runCLI(t, env, "list", "--limit", "2", "-o", "json")
		var page struct {
			Events []map[string]any `json:"events"`
			Next   int64            `json:"next"`
		}
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &page) != nil || len(page.Events) != 2 || page.Next == 0 {
			t.Fatalf("%+v", r)
		}
		r = runCLI(t, env, "list", "--after", fmt.Sprint(page.Next), "--status", "pending", "--since", "1h")
		if r.code != 0 || !strings.Contains(r.stdout, ids[2]) || strings.Contains(r.stdout, ids[0]) {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("show", func(t *testing.T) {
		r := runCLI(t, env, "show", ids[0])
		if r.code != 0 || !strings.Contains(r.stdout, `{"amount":"1.00"}`) || !strings.Contains(r.stdout, "INV-0") {
			t.Fatalf("%+v", r)
		}
		r = runCLI(t, env, "show", "01933b7e-8a4c-7d2e-9a51-5f0c3b1e2d4f")
		if r.code != exitNotFound {
			t.Fatalf("missing event: %+v", r)
		}
	})
	t.Run("retry dry-run, confirmation and yes", func(t *testing.T) {
		if _, err := db.Exec(strings.ReplaceAll(d.dead, "{T}", d.quote(table)), ids[1]); err != nil {
			t.Fatal(err)
		}
		r := runCLI(t, env, "retry", "--all-dead", "--dry-run")
		if r.code != 0 || !strings.Contains(r.stdout, "would retry 1 event(s)") {
			t.Fatalf("%+v", r)
		}
		r = runCLI(t, env, "retry", "--all-dead") // stdin is not a terminal: needs --yes
		if r.code != exitAborted || !strings.Contains(r.stderr, "--yes") {
			t.Fatalf("%+v", r)
		}
		r = runCLI(t, env, "retry", "--all-dead", "--yes")
		if r.code != 0 || !strings.Contains(r.stdout, "retried 1 event(s)") {
			t.Fatalf("%+v", r)
		}
		if e, _ := ob.Get(context.Background(), ids[1]); e.Status != outbox.StatusPending {
			t.Fatalf("status after retry: %s", e.Status)
		}
	})
	t.Run("purge keeps pending", func(t *testing.T) {
		if _, err := db.Exec(strings.ReplaceAll(d.oldDelivered, "{T}", d.quote(table)), ids[2]); err != nil {
			t.Fatal(err)
		}
		r := runCLI(t, env, "purge", "--delivered-older-than", "7d")
		if r.code != 0 || !strings.Contains(r.stdout, "purged 1 delivered") {
			t.Fatalf("%+v", r)
		}
		r = runCLI(t, env, "status", "-o", "json")
		if !strings.Contains(r.stdout, `"pending": 2`) {
			t.Fatalf("%+v", r)
		}
	})
	// Last: it adds a pending event.
	t.Run("hostile fields are escaped, the topic listed, the payload bounded", func(t *testing.T) {
		tx, _ := db.Begin()
		big := &outbox.Event{Type: "evil\x1b[2Jtype", Topic: "<b>topic</b>", Key: "K\x1b]0;pwned\x07", Payload: make([]byte, 100<<10)}
		if err := ob.Insert(context.Background(), tx, big); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		r := runCLI(t, env, "list", "--type", big.Type)
		if r.code != 0 || strings.Contains(r.stdout, "\x1b") || !strings.Contains(r.stdout, `"K\x1b]0;pwned\a"`) ||
			!strings.Contains(r.stdout, "TOPIC") || !strings.Contains(r.stdout, "<b>topic</b>") {
			t.Fatalf("list: %+v", r)
		}
		r = runCLI(t, env, "show", big.ID, "--max-payload", "1000")
		if r.code != 0 || strings.Contains(r.stdout, "\x1b") || !strings.Contains(r.stdout, `"evil\x1b[2Jtype"`) ||
			len(r.stdout) > 5000 || !strings.Contains(r.stdout, fmt.Sprintf("%d more byte(s) not shown", 100<<10-1000)) {
			t.Fatalf("show: code %d, %d bytes of output: %.500s", r.code, len(r.stdout), r.stdout)
		}
		r = runCLI(t, env, "show", big.ID) // default: 64 KiB
		if r.code != 0 || len(r.stdout) > 64<<10*2+1000 {
			t.Fatalf("show printed %d bytes", len(r.stdout))
		}
	})
}

func TestErrorsAndExitCodes(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		args []string
		code int
		want string
	}{
		"unknown flag":                {[]string{"status", "--bogus"}, exitUsage, "unknown flag"},
		"no db":                       {[]string{"status", "--db-url", ""}, exitUsage, "--db-url"},
		"bad scheme":                  {[]string{"status", "--db-url", "oracle://x"}, exitUsage, "oracle"},
		"bad table":                   {[]string{"status", "--db-url", "postgres://u@127.0.0.1:1/x", "--table", "a;drop"}, exitUsage, "Table"},
		"unreachable db":              {[]string{"status", "--db-url", "postgres://app:s3cret@127.0.0.1:1/x?sslmode=disable"}, exitError, "cannot reach database"},
		"bad output":                  {[]string{"list", "-o", "yaml", "--db-url", "postgres://x"}, exitUsage, "--output"},
		"bad age":                     {[]string{"purge", "--delivered-older-than", "soon", "--db-url", "postgres://x"}, exitUsage, "duration"},
		"retry needs ids":             {[]string{"retry", "--db-url", "postgres://x"}, exitUsage, "--all-dead"},
		"relay needs a url":           {[]string{"relay", "--db-url", "postgres://x", "--broker-url", ""}, exitUsage, "--broker-url"},
		"negative purge age":          {[]string{"purge", "--delivered-older-than", "-1h", "--db-url", "postgres://x"}, exitUsage, "must not be negative"},
		"schema on mysql":             {[]string{"status", "--db-url", "mysql://root@127.0.0.1:1/x", "--schema", "s"}, exitUsage, "--schema: PostgreSQL only"},
		"schema on sqlite":            {[]string{"status", "--db-url", "sqlite:///tmp/x.db", "--schema", "s"}, exitUsage, "--schema: PostgreSQL only"},
		"mysql url help not redacted": {[]string{"status", "--db-url", "mysql://"}, exitUsage, "mysql://user:password@host"},
		"unknown broker parameter": {[]string{"relay", "--db-url", outboxtest.PostgresURL(), "--broker-url",
			"nats://app:s3cret@127.0.0.1:4222?bogus=1"}, exitUsage, `"bogus"`},
		"bad broker port keeps the URL readable": {[]string{"relay", "--db-url", outboxtest.PostgresURL(), "--broker-url",
			"nats://app:s3cret@127.0.0.1:42x22"}, exitUsage, "nats://app:xxxxx@127.0.0.1:42x22"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := runCLI(t, nil, c.args...)
			if r.code != c.code || !strings.Contains(r.stderr, c.want) {
				t.Fatalf("code %d stderr %q; want code %d containing %q", r.code, r.stderr, c.code, c.want)
			}
			if strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
				t.Fatalf("error is not one line: %q", r.stderr)
			}
			if strings.Contains(r.stderr, "s3cret") {
				t.Fatalf("secret printed: %q", r.stderr)
			}
			if strings.Contains(r.stderr, "outbox: outbox:") || strings.Count(r.stderr, "outbox: ") > 1 {
				t.Fatalf("prefix repeated: %q", r.stderr)
			}
		})
	}
}

func TestConfigFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := dir + "/outbox.yaml"
	if err := os.WriteFile(path, []byte("db_url: postgres://x\nunknown_key: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, nil, "status", "--config", path)
	if r.code != exitUsage || !strings.Contains(r.stderr, "unknown_key") {
		t.Fatalf("%+v", r)
	}
}

func TestConfigFileDocuments(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]struct{ yaml, want string }{
		"empty":            {"", "no settings"},
		"comments only":    {"# db_url: postgres://x\n\n# table: t\n", "no settings"},
		"typo in a second": {"db_url: postgres://x\n---\ntabel: t\n", "second YAML document"},
		"second document":  {"db_url: postgres://x\n---\ntable: t\n", "more than one YAML document"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "outbox.yaml")
			if err := os.WriteFile(path, []byte(c.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			r := runCLI(t, nil, "status", "--config", path)
			if r.code != exitUsage || !strings.Contains(r.stderr, c.want) {
				t.Fatalf("code %d stderr %q, want 2 and %q", r.code, r.stderr, c.want)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	r := runCLI(t, nil, "--version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "outbox version ") {
		t.Fatalf("%+v", r)
	}
}

func TestSQLite(t *testing.T) {
	t.Parallel()
	url := "sqlite://" + filepath.Join(t.TempDir(), "app.db")
	if r := runCLI(t, nil, "migrate", "up", "--db-url", url); r.code != 0 {
		t.Fatalf("%+v", r)
	}
	r := runCLI(t, nil, "status", "--db-url", url, "-o", "json")
	if r.code != 0 || !strings.Contains(r.stdout, `"pending": 0`) {
		t.Fatalf("%+v", r)
	}
}
