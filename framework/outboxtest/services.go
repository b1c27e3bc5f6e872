// Package outboxtest helps test code built on outboxkit: locating the test
// services (databases and brokers) and deciding what happens when one is
// missing, and asserting what a transaction wrote to the outbox.
//
// Service locations come from the environment, with local defaults:
//
//	OUTBOX_TEST_POSTGRES_URL  postgres://postgres@127.0.0.1:5432/test?sslmode=disable
//	OUTBOX_TEST_MYSQL_DSN     root@tcp(127.0.0.1:3306)/test
//	OUTBOX_TEST_NATS_URL      nats://127.0.0.1:4222
//	OUTBOX_TEST_AMQP_URL      amqp://guest:guest@127.0.0.1:5672/
//	OUTBOX_TEST_REDIS_URL     redis://127.0.0.1:6379/0
//
// When a service is unreachable, RequireService skips the test, or fails it
// when OUTBOX_TEST_REQUIRE is "all" (CI sets it) or lists the service
// (comma-separated, e.g. "postgres,nats"). When OUTBOX_TEST_SKIPLOG names a
// file, every skip appends one line to it, so `make test` can print a summary
// of the matrix cells that did not run and why.
package outboxtest

import (
	"cmp"
	"fmt"
	"net"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Service names accepted by RequireService and OUTBOX_TEST_REQUIRE.
const (
	Postgres = "postgres"
	MySQL    = "mysql"
	NATS     = "nats"
	AMQP     = "amqp"
	Redis    = "redis"
)

// PostgresURL returns OUTBOX_TEST_POSTGRES_URL or the local default.
func PostgresURL() string {
	return cmp.Or(os.Getenv("OUTBOX_TEST_POSTGRES_URL"), "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
}

// MySQLDSN returns OUTBOX_TEST_MYSQL_DSN (go-sql-driver form) or the local default.
func MySQLDSN() string {
	return cmp.Or(os.Getenv("OUTBOX_TEST_MYSQL_DSN"), "root@tcp(127.0.0.1:3306)/test")
}

// NATSURL returns OUTBOX_TEST_NATS_URL or the local default.
func NATSURL() string { return cmp.Or(os.Getenv("OUTBOX_TEST_NATS_URL"), "nats://127.0.0.1:4222") }

// AMQPURL returns OUTBOX_TEST_AMQP_URL or the local default.
func AMQPURL() string {
	return cmp.Or(os.Getenv("OUTBOX_TEST_AMQP_URL"), "amqp://guest:guest@127.0.0.1:5672/")
}

// RedisURL returns OUTBOX_TEST_REDIS_URL or the local default.
func RedisURL() string { return cmp.Or(os.Getenv("OUTBOX_TEST_REDIS_URL"), "redis://127.0.0.1:6379/0") }

// ServiceAddr returns the host:port of a named service from its URL or DSN.
func ServiceAddr(service string) string {
	switch service {
	case Postgres:
		return hostPort(PostgresURL(), "5432")
	case MySQL:
		dsn := MySQLDSN()
		if i, j := strings.Index(dsn, "tcp("), strings.Index(dsn, ")/"); i >= 0 && j > i {
			return dsn[i+4 : j]
		}
		return "127.0.0.1:3306"
	case NATS:
		return hostPort(NATSURL(), "4222")
	case AMQP:
		return hostPort(AMQPURL(), "5672")
	case Redis:
		return hostPort(RedisURL(), "6379")
	}
	return ""
}

func hostPort(raw, defPort string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "127.0.0.1:" + defPort
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), defPort)
	}
	return u.Host
}

var (
	reachMu sync.Mutex
	reach   = map[string]error{}
)

// Reachable dials the service once per process (cached) and returns why it
// is unreachable, or nil.
func Reachable(service string) error {
	reachMu.Lock()
	defer reachMu.Unlock()
	if err, ok := reach[service]; ok {
		return err
	}
	addr := ServiceAddr(service)
	var err error
	if addr == "" {
		err = fmt.Errorf("unknown service %q", service)
	} else if c, dialErr := net.DialTimeout("tcp", addr, 2*time.Second); dialErr != nil {
		err = fmt.Errorf("%s unreachable at %s: %v", service, addr, dialErr)
	} else {
		c.Close()
	}
	reach[service] = err
	return err
}

// Required reports whether OUTBOX_TEST_REQUIRE demands the service.
func Required(service string) bool {
	req := os.Getenv("OUTBOX_TEST_REQUIRE")
	if req == "all" {
		return true
	}
	return slices.Contains(strings.Split(req, ","), service)
}

// RequireService makes sure every named service is reachable. Otherwise it
// skips the test (logging the skipped cell to OUTBOX_TEST_SKIPLOG), or fails
// it when OUTBOX_TEST_REQUIRE demands the service.
func RequireService(t testing.TB, services ...string) {
	t.Helper()
	for _, s := range services {
		err := Reachable(s)
		if err == nil {
			continue
		}
		if Required(s) {
			t.Fatalf("required service missing (OUTBOX_TEST_REQUIRE=%s): %v", os.Getenv("OUTBOX_TEST_REQUIRE"), err)
		}
		logSkip(t.Name(), testPackage(), err)
		t.Skipf("skipped: %v (set OUTBOX_TEST_REQUIRE=all to fail instead)", err)
	}
}

// testPackage returns the import path of the package of the running test:
// that of the outermost caller below the testing package (the Test function
// or one of its subtests), without the _test suffix of an external test
// package. Empty when there is none.
func testPackage() string {
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	pkg := ""
	for {
		f, more := frames.Next()
		fn := f.Function
		if strings.HasPrefix(fn, "testing.") || strings.HasPrefix(fn, "runtime.") {
			break
		}
		slash := strings.LastIndex(fn, "/")
		if dot := strings.Index(fn[slash+1:], "."); dot >= 0 {
			pkg = strings.TrimSuffix(fn[:slash+1+dot], "_test")
		}
		if !more {
			break
		}
	}
	return pkg
}

// logSkip appends "test<TAB>reason<TAB>package" to OUTBOX_TEST_SKIPLOG.
func logSkip(name, pkg string, reason error) {
	path := os.Getenv("OUTBOX_TEST_SKIPLOG")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s\t%v\t%s\n", name, strings.ReplaceAll(reason.Error(), "\t", " "), pkg)
}

// UniqueName returns a fresh identifier-safe name with the given prefix for
// a test's own table, schema, stream or topic.
func UniqueName(prefix string) string {
	return fmt.Sprintf("%s_%d_%d", prefix, os.Getpid(), uniqueSeq.Add(1)) + randSuffix()
}
