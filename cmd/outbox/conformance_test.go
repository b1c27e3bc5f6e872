package main

import (
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

// junitDoc is what a CI system reads from --report-junit.
type junitDoc struct {
	XMLName  xml.Name `xml:"testsuites"`
	Tests    int      `xml:"tests,attr"`
	Failures int      `xml:"failures,attr"`
	Suites   []struct {
		Name     string `xml:"name,attr"`
		Tests    int    `xml:"tests,attr"`
		Failures int    `xml:"failures,attr"`
		Cases    []struct {
			Classname string `xml:"classname,attr"`
			Name      string `xml:"name,attr"`
			Time      string `xml:"time,attr"`
			Failure   *struct {
				Message string `xml:"message,attr"`
				Text    string `xml:",chardata"`
			} `xml:"failure"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// conformanceRun runs `outbox conformance` with reports in a fresh
// directory and returns the result and both reports (the JUnit one parsed).
func conformanceRun(t *testing.T, args ...string) (result, string, junitDoc) {
	t.Helper()
	dir := t.TempDir()
	md, junit := filepath.Join(dir, "report.md"), filepath.Join(dir, "report.xml")
	r := runCLI(t, nil, append([]string{"conformance", "--report-md", md, "--report-junit", junit}, args...)...)
	mdText, err := os.ReadFile(md)
	if err != nil {
		t.Fatalf("no Markdown report: %v (%+v)", err, r)
	}
	raw, err := os.ReadFile(junit)
	if err != nil {
		t.Fatalf("no JUnit report: %v", err)
	}
	var doc junitDoc
	if err := xml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("JUnit report is not XML: %v\n%s", err, raw)
	}
	return r, string(mdText), doc
}

func TestConformanceCommand(t *testing.T) {
	t.Parallel()

	t.Run("postgres_nats_C1_C7", func(t *testing.T) {
		t.Parallel()
		outboxtest.RequireService(t, outboxtest.Postgres, outboxtest.NATS)
		r, md, doc := conformanceRun(t, "--db-url", outboxtest.PostgresURL(), "--broker-url", outboxtest.NATSURL(),
			"--short", "--run", "C1|C7")
		if r.code != 0 {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
		}
		for _, want := range []string{
			"| cell | broker promises | counts | time | C1 | C2 | C3 | C4 | C5 | C6 | C7 |",
			"| postgres × nats | native dedup, per-key order | short |",
			"| ✓ | — | — | — | — | — | ✓ |",
		} {
			if !strings.Contains(md, want) {
				t.Errorf("Markdown report lacks %q:\n%s", want, md)
			}
		}
		if strings.Contains(md, "## Failures") || !strings.Contains(r.stdout, "| postgres × nats |") {
			t.Errorf("stdout should carry the table and no failure:\n%s", r.stdout)
		}
		if len(doc.Suites) != 1 || doc.Suites[0].Name != "postgres_nats" || doc.Failures != 0 {
			t.Fatalf("JUnit: %+v", doc)
		}
		lines := map[string]int{}
		for _, c := range doc.Suites[0].Cases {
			lines[c.Classname]++
			if c.Name == "" || c.Time == "" || c.Failure != nil {
				t.Errorf("testcase %+v", c)
			}
		}
		// C1 has 3 tests, C7 4 (see conformance's c1.go, c5c6c7.go); nothing else ran.
		if len(lines) != 2 || lines["postgres_nats.C1"] < 3 || lines["postgres_nats.C7"] < 3 || doc.Tests != len(doc.Suites[0].Cases) {
			t.Errorf("JUnit testcases per line: %v (tests=%d)", lines, doc.Tests)
		}
	})

	t.Run("sqlite_memory_needs_no_service", func(t *testing.T) {
		t.Parallel()
		db := filepath.Join(t.TempDir(), "conf.db")
		r, md, doc := conformanceRun(t, "--db-url", "sqlite://"+db, "--broker-url", "memory://", "--short", "--run", "C1")
		if r.code != 0 || !strings.Contains(md, "| sqlite × memory |") || doc.Tests < 3 || doc.Failures != 0 {
			t.Fatalf("exit %d, report:\n%s\nJUnit %+v\nstderr:\n%s", r.code, md, doc, r.stderr)
		}
	})

	t.Run("failing_cell_reports_each_failure", func(t *testing.T) {
		t.Parallel()
		outboxtest.RequireService(t, outboxtest.Postgres, outboxtest.NATS)
		// A NATS server where RabbitMQ is expected: reachable over TCP,
		// every test fails fast on the AMQP handshake. The password must
		// not reach any report.
		natsAddr := outboxtest.ServiceAddr(outboxtest.NATS)
		r, md, doc := conformanceRun(t, "--db-url", outboxtest.PostgresURL(),
			"--broker-url", "amqp://guest:s3cret@"+natsAddr+"/", "--short", "--run", "C1")
		if r.code != 1 {
			t.Fatalf("exit %d, want 1\nstderr:\n%s", r.code, r.stderr)
		}
		if !strings.Contains(r.stderr, "outbox-conformance: 3 of 3 tests failed") {
			t.Errorf("stderr should end with one clear line:\n%s", r.stderr)
		}
		if !strings.Contains(md, "✗ commit_publishes, rollback_publishes_nothing, savepoint_rollback_publishes_nothing_of_it") ||
			!strings.Contains(md, "### C1/commit_publishes") || !strings.Contains(md, "connect to RabbitMQ") {
			t.Errorf("Markdown report should name the failed tests and their messages:\n%s", md)
		}
		if doc.Failures != 3 || len(doc.Suites) != 1 || doc.Suites[0].Failures != 3 {
			t.Fatalf("JUnit failures: %+v", doc)
		}
		for _, c := range doc.Suites[0].Cases {
			if c.Failure == nil || !strings.Contains(c.Failure.Message, "connect to RabbitMQ") || c.Failure.Text == "" {
				t.Errorf("testcase %s: failure %+v", c.Name, c.Failure)
			}
		}
		for name, text := range map[string]string{"stdout": r.stdout, "stderr": r.stderr, "Markdown": md} {
			if strings.Contains(text, "s3cret") {
				t.Errorf("%s shows the broker password", name)
			}
		}
	})

	t.Run("unreachable_broker", func(t *testing.T) {
		t.Parallel()
		outboxtest.RequireService(t, outboxtest.Postgres)
		r := runCLI(t, nil, "conformance", "--db-url", outboxtest.PostgresURL(), "--broker-url", "nats://127.0.0.1:1", "--short")
		if r.code != 1 || !strings.Contains(r.stderr, "broker unreachable at 127.0.0.1:1") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Fatalf("want one clear line and exit 1: %+v", r)
		}
	})

	t.Run("sqlite_kafka_no_service", func(t *testing.T) {
		t.Parallel()
		// kfake on a TCP port stands in for the user's Kafka cluster.
		c, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		db := filepath.Join(t.TempDir(), "conf.db")
		r, md, doc := conformanceRun(t, "--db-url", "sqlite://"+db, "--broker-url", "kafka://"+c.ListenAddrs()[0], "--short", "--run", "C1|C2/broker_cut")
		if r.code != 0 || !strings.Contains(md, "| sqlite × kafka |") || doc.Failures != 0 {
			t.Fatalf("exit %d, report:\n%s\nstderr:\n%s", r.code, md, r.stderr)
		}
		if !strings.Contains(r.stderr, "PASS C2/broker_cut") {
			t.Errorf("the broker-cut test should run (and pass) through the proxy in front of the advertised listener:\n%s", r.stderr)
		}
		if !strings.Contains(md, "1 cell;") {
			t.Errorf("the report should count 1 cell:\n%s", md)
		}
	})

	t.Run("runner_missing", func(t *testing.T) {
		t.Parallel()
		r := runCLI(t, map[string]string{conformanceBinEnv: filepath.Join(t.TempDir(), "absent")},
			"conformance", "--db-url", "sqlite://"+filepath.Join(t.TempDir(), "conf.db"), "--broker-url", "memory://")
		if r.code != 1 || !strings.Contains(r.stderr, "outbox: conformance: running") {
			t.Fatalf("want exit 1 naming the runner: %+v", r)
		}
	})

	t.Run("usage_errors", func(t *testing.T) {
		t.Parallel()
		sqlite := "sqlite://" + filepath.Join(t.TempDir(), "conf.db")
		for _, tc := range []struct {
			name, want string
			args       []string
		}{
			{"no_db", "no database", []string{"--broker-url", "memory://"}},
			{"no_broker", "no broker", []string{"--db-url", sqlite}},
			{"unsupported_broker", "mqtt", []string{"--db-url", sqlite, "--broker-url", "mqtt://127.0.0.1:1883"}},
			{"bad_run", "--run", []string{"--db-url", sqlite, "--broker-url", "memory://", "--run", "C1("}},
			{"run_matches_nothing", "matched no contract test", []string{"--db-url", sqlite, "--broker-url", "memory://", "--run", "C9"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := runCLI(t, nil, append([]string{"conformance"}, tc.args...)...)
				if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
					t.Fatalf("want exit 2 and %q: %+v", tc.want, r)
				}
			})
		}
	})
}

// TestOutboxLinksNoTestCode: the operator binary links neither the testing
// package nor the in-process Kafka (kfake) nor the conformance suite; the
// suite is the outbox-conformance binary's.
func TestOutboxLinksNoTestCode(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for dep := range strings.FieldsSeq(string(out)) {
		if dep == "testing" || strings.Contains(dep, "/kfake") || strings.HasPrefix(dep, "github.com/outboxkit/outboxkit/conformance") {
			t.Errorf("the outbox binary links %s", dep)
		}
	}
}
