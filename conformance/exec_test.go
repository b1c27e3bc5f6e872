package conformance

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"
	"time"
)

func TestRunPatternFor(t *testing.T) {
	t.Parallel()
	for run, want := range map[string]string{
		"":                  "^TestConformance$",
		"C1":                "^TestConformance$/C1",
		"C1|C7":             "^TestConformance$/C1|^TestConformance$/C7",
		"C2/broker_(cut|x)": "^TestConformance$/C2/broker_(cut|x)",
		`C4|C5/a\|b`:        `^TestConformance$/C4|^TestConformance$/C5/a\|b`,
		"C[1|2]":            "^TestConformance$/C[1|2]",
	} {
		if got := runPatternFor(run); got != want {
			t.Errorf("runPatternFor(%q) = %q, want %q", run, got, want)
		}
	}
}

// stream is -test.v=test2json output as the suite process prints it: a
// pass, a skip, a failure, and a test still running when the process died.
const stream = "\x16=== RUN   TestConformance\n" +
	"\x16=== RUN   TestConformance/C1\n" +
	"\x16=== PAUSE TestConformance/C1\n" +
	"\x16=== CONT  TestConformance/C1\n" +
	"\x16=== RUN   TestConformance/C1/commit_publishes\n" +
	"\x16=== RUN   TestConformance/C1/rollback\n" +
	"\x16=== RUN   TestConformance/C2/broker_cut\n" +
	"\x16=== RUN   TestConformance/C2/database_cut\n" +
	"\x16=== NAME  TestConformance/C1/commit_publishes\n" +
	"    c1.go:30: published\n" +
	"\x16--- PASS: TestConformance/C1/commit_publishes (0.25s)\n" +
	"\x16=== NAME  TestConformance/C2/database_cut\n" +
	"    c2.go:300: database sqlite: no Addr/DSNVia, cannot route it through a proxy\n" +
	"\x16--- SKIP: TestConformance/C2/database_cut (0.00s)\n" +
	"\x16=== NAME  TestConformance/C1/rollback\n" +
	"    c1.go:50: rolled back event <b>&\x01 was published\n" +
	"        second line\n" +
	"\x16--- FAIL: TestConformance/C1/rollback (1.50s)\n" +
	"panic: test timed out after 2s\n" +
	"\trunning tests:\n" +
	"\t\tTestConformance/C2/broker_cut (2s)\n"

func TestStreamReport(t *testing.T) {
	t.Parallel()
	var ended []string
	p := newStreamParser(nil, func(tr TestResult) { ended = append(ended, tr.Line+"/"+tr.Test) })
	for l := range strings.SplitSeq(strings.TrimSuffix(stream, "\n"), "\n") {
		p.line([]byte(l))
	}
	h := Harness{Name: "sqlite_memory", Database: Database{Name: "sqlite"}, Broker: Memory()}
	rep := p.report(h, ExecConfig{DatabaseURL: "sqlite:///x.db", BrokerURL: "memory://", Short: true}, 2, 3*time.Second)

	if got := strings.Join(ended, " "); got != "C1/commit_publishes C2/database_cut C1/rollback" {
		t.Errorf("progress order: %s", got)
	}
	want := map[string]Status{"C1/commit_publishes": StatusPass, "C1/rollback": StatusFail, "C2/broker_cut": StatusFail, "C2/database_cut": StatusSkip}
	if len(rep.Tests) != len(want) {
		t.Fatalf("tests: %+v", rep.Tests)
	}
	for _, tr := range rep.Tests {
		if want[tr.Line+"/"+tr.Test] != tr.Status {
			t.Errorf("%s/%s: %s, want %s", tr.Line, tr.Test, tr.Status, want[tr.Line+"/"+tr.Test])
		}
		switch tr.Test {
		case "commit_publishes":
			if tr.Duration != 250*time.Millisecond {
				t.Errorf("duration %s", tr.Duration)
			}
		case "database_cut":
			if tr.Reason != "database sqlite: no Addr/DSNVia, cannot route it through a proxy" {
				t.Errorf("skip reason %q", tr.Reason)
			}
		case "broker_cut":
			// Still running when the process died.
			if !strings.Contains(tr.Output, "exit status 2") {
				t.Errorf("broker_cut output %q", tr.Output)
			}
		}
	}
	if !rep.Failed() || !strings.Contains(rep.Output, "panic: test timed out after 2s") {
		t.Errorf("report not failed, or the panic is not in its Output %q", rep.Output)
	}

	var md bytes.Buffer
	if err := rep.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		"| sqlite × memory | no id slot, no order, in-process | short | 3s | ✗ rollback | ✗ broker_cut; skip database_cut [1] |",
		"### C1/rollback (1.5s)", "rolled back event <b>&", "[1] database sqlite: no Addr/DSNVia", "## Suite output (exit status 2)",
	} {
		if !strings.Contains(md.String(), s) {
			t.Errorf("Markdown lacks %q:\n%s", s, md.String())
		}
	}

	var x bytes.Buffer
	if err := rep.WriteJUnit(&x); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Skipped  int `xml:"skipped,attr"`
		Suite    struct {
			Cases []struct {
				Classname string `xml:"classname,attr"`
				Name      string `xml:"name,attr"`
				Failure   *struct {
					Message string `xml:"message,attr"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(x.Bytes(), &doc); err != nil {
		t.Fatalf("JUnit: %v\n%s", err, x.String())
	}
	if doc.Tests != 4 || doc.Failures != 2 || doc.Skipped != 1 {
		t.Errorf("JUnit counts %d/%d/%d:\n%s", doc.Tests, doc.Failures, doc.Skipped, x.String())
	}
	for _, c := range doc.Suite.Cases {
		if c.Name == "rollback" && (c.Classname != "sqlite_memory.C1" || c.Failure == nil || !strings.HasPrefix(c.Failure.Message, "rolled back event <b>&\uFFFD was published")) {
			t.Errorf("rollback testcase: %+v %+v", c, c.Failure)
		}
	}
}
