// Package pgtest starts a throwaway PostgreSQL cluster with
// wal_level=logical for tests of the CDC relay (postgres.NewCDC), so that
// nothing depends on the settings of the machine's own server.
//
// The cluster is an initdb of the installed server (the newest
// /usr/lib/postgresql/*/bin, or OUTBOX_TEST_PG_BIN) in a temporary
// directory, listening on a free loopback port. It is started once per
// process, on first use, and its URL is put in the environment
// (OUTBOX_TEST_POSTGRES_CDC_URL) so that subprocesses of the test (the
// conformance suite's SIGKILL relays) use the same cluster. When that
// variable is already set, its cluster is used and nothing is started.
// Call Stop from TestMain after m.Run; it stops only a cluster this
// process started.
package pgtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/lib/pq" // the "postgres" database/sql driver

	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

// URLEnv names the environment variable holding the URL of a running
// cluster with wal_level=logical; when set, Start uses it.
const URLEnv = "OUTBOX_TEST_POSTGRES_CDC_URL"

// BinEnv names the environment variable holding the directory of the
// PostgreSQL server binaries (initdb, pg_ctl) to use.
const BinEnv = "OUTBOX_TEST_PG_BIN"

var (
	mu       sync.Mutex
	started  bool
	url      string
	startErr error
	dataDir  string // set when this process started the cluster
	baseDir  string
	runAs    []string // command prefix running a program as the cluster's owner
	binDir   string
)

// Start returns the URL of a cluster with wal_level=logical, starting one
// the first time it is called in a process without URLEnv.
func Start() (string, error) {
	mu.Lock()
	defer mu.Unlock()
	if started {
		return url, startErr
	}
	started = true
	if u := os.Getenv(URLEnv); u != "" {
		url = u
		return url, nil
	}
	url, startErr = start()
	if startErr == nil {
		os.Setenv(URLEnv, url)
	}
	return url, startErr
}

// URL returns the cluster's URL for a test, starting the cluster if
// needed. When it cannot be started, the test is skipped with the reason,
// or fails when OUTBOX_TEST_REQUIRE demands postgres ("all" does).
func URL(t testing.TB) string {
	t.Helper()
	u, err := Start()
	if err != nil {
		if outboxtest.Required(outboxtest.Postgres) {
			t.Fatalf("required PostgreSQL cluster with wal_level=logical did not start (OUTBOX_TEST_REQUIRE=%s): %v", os.Getenv("OUTBOX_TEST_REQUIRE"), err)
		}
		t.Skipf("skipped: PostgreSQL cluster with wal_level=logical did not start: %v (set OUTBOX_TEST_REQUIRE=all to fail instead)", err)
	}
	return u
}

// Restart restarts the cluster this process started (pg_ctl restart, fast
// mode): every connection is cut, and the cluster comes back on the same
// port with the same data. It fails when this process did not start it.
func Restart() error {
	mu.Lock()
	defer mu.Unlock()
	if dataDir == "" {
		return errors.New("pgtest: no cluster started by this process")
	}
	return pgctl("restart", "-m", "fast")
}

// Stop stops and removes the cluster this process started; it does
// nothing otherwise.
func Stop() {
	mu.Lock()
	defer mu.Unlock()
	if dataDir == "" {
		return
	}
	_ = pgctl("stop", "-m", "immediate")
	os.RemoveAll(baseDir)
	dataDir = ""
	if os.Getenv(URLEnv) == url {
		os.Unsetenv(URLEnv)
	}
}

func pgctl(args ...string) error {
	full := append([]string{"-D", dataDir, "-w", "-t", "60", "-l", filepath.Join(baseDir, "server.log")}, args...)
	return run(filepath.Join(binDir, "pg_ctl"), full...)
}

func run(prog string, args ...string) error {
	argv := append(slices.Clone(runAs), prog)
	argv = append(argv, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = os.TempDir()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// findBin returns the directory of initdb and pg_ctl.
func findBin() (string, error) {
	if d := os.Getenv(BinEnv); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return vb - va
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("no initdb found (set %s to the PostgreSQL bin directory)", BinEnv)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func start() (string, error) {
	bin, err := findBin()
	if err != nil {
		return "", err
	}
	binDir = bin
	base, err := os.MkdirTemp("", "outboxkit-pgcdc-")
	if err != nil {
		return "", err
	}
	runAs = nil
	if os.Geteuid() == 0 {
		// The server refuses to run as root: run it as the postgres user,
		// owner of the directory.
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(base)
			return "", fmt.Errorf("running as root and no postgres user to run the server as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(base, uid, gid); err != nil {
			os.RemoveAll(base)
			return "", err
		}
		runAs = []string{"runuser", "-u", "postgres", "--"}
	}
	data := filepath.Join(base, "data")
	if err := run(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions"); err != nil {
		os.RemoveAll(base)
		return "", err
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(base)
		return "", err
	}
	conf := fmt.Sprintf(`
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = '%s'
wal_level = logical
max_replication_slots = 200
max_wal_senders = 200
max_connections = 400
fsync = off
full_page_writes = off
shared_buffers = 64MB
wal_sender_timeout = 60s
`, port, base)
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteString(conf)
		f.Close()
	}
	if err != nil {
		os.RemoveAll(base)
		return "", err
	}
	baseDir, dataDir = base, data
	if err := pgctl("start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(base, "server.log"))
		os.RemoveAll(base)
		dataDir = ""
		return "", fmt.Errorf("%w\n%s", err, log)
	}
	u := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	if err := waitReady(u); err != nil {
		_ = pgctl("stop", "-m", "immediate")
		os.RemoveAll(base)
		dataDir = ""
		return "", err
	}
	return u, nil
}

func waitReady(u string) error {
	db, err := sql.Open("postgres", u)
	if err != nil {
		return err
	}
	defer db.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = db.PingContext(ctx)
		cancel()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
