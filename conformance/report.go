package conformance

import (
	"cmp"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"time"
)

// Report is the outcome of one Exec run: one cell, the contract tests that
// ran, with their output.
type Report struct {
	// Cell describes the cell (Suite is ExecTest; Skipped is set when the
	// whole cell was skipped).
	Cell CellInfo

	// DatabaseURL and BrokerURL are the cell's URLs with their passwords
	// hidden.
	DatabaseURL, BrokerURL string

	// Run is ExecConfig.Run (empty: every test).
	Run string

	// Tests are the contract tests that ran, in the order they started.
	Tests []TestResult

	// Output is what the suite process printed outside any contract test:
	// the cell's own messages, a panic, the timeout's list of running tests.
	Output string

	// ExitCode is the suite process's exit status: 0 when every test
	// passed or was skipped.
	ExitCode int
}

// TestResult is one contract test of a Report.
type TestResult struct {
	Result

	// Output is what the test logged (go test -v form, "file.go:12: ..."),
	// the failure messages included.
	Output string
}

// Failed reports whether a test failed or the suite process did not end
// cleanly.
func (r *Report) Failed() bool {
	if r.ExitCode != 0 {
		return true
	}
	for _, t := range r.Tests {
		if t.Status == StatusFail {
			return true
		}
	}
	return false
}

// Counts returns the number of tests that passed, failed and were skipped.
func (r *Report) Counts() (pass, fail, skip int) {
	for _, t := range r.Tests {
		switch t.Status {
		case StatusPass:
			pass++
		case StatusFail:
			fail++
		case StatusSkip:
			skip++
		}
	}
	return pass, fail, skip
}

// WriteMarkdown writes the report as Markdown: the cell × contract-line
// table of the matrix summary (WriteSummary's form), then every failed test
// with its messages, then the suite process's own output when the run
// failed.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# outboxkit conformance: %s × %s\n\n", r.Cell.Database, r.Cell.Broker)
	counts := "full counts"
	if r.Cell.Short {
		counts = "short counts"
	}
	sel := "every contract test"
	if r.Run != "" {
		sel = "contract tests matching `" + r.Run + "`"
	}
	fmt.Fprintf(&b, "Database `%s`, broker `%s`; %s, %s.\n\n", r.DatabaseURL, r.BrokerURL, counts, sel)
	results := make([]Result, len(r.Tests))
	for i, t := range r.Tests {
		results[i] = t.Result
	}
	b.WriteString(summaryTable(results, []CellInfo{r.Cell}))
	var failed []TestResult
	for _, t := range r.Tests {
		if t.Status == StatusFail {
			failed = append(failed, t)
		}
	}
	if len(failed) > 0 {
		b.WriteString("\n## Failures\n")
		for _, t := range failed {
			fmt.Fprintf(&b, "\n### %s/%s (%s)\n\n", t.Line, t.Test, t.Duration.Round(time.Millisecond))
			writeBlock(&b, clip(t.Output, 120, 40))
		}
	}
	if r.Failed() && strings.TrimSpace(r.Output) != "" {
		fmt.Fprintf(&b, "\n## Suite output (exit status %d)\n\n", r.ExitCode)
		writeBlock(&b, lastLines(r.Output, 200))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeBlock writes text as a fenced code block whose fence is longer than
// any backtick run inside it.
func writeBlock(b *strings.Builder, text string) {
	fence := "```"
	for strings.Contains(text, fence) {
		fence += "`"
	}
	text = strings.TrimRight(text, "\n")
	if text == "" {
		text = "(no output)"
	}
	fmt.Fprintf(b, "%s\n%s\n%s\n", fence, text, fence)
}

// clip keeps the first head and the last tail lines of s when it has more
// (a panic's goroutine dump): the JUnit report keeps everything.
func clip(s string, head, tail int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) <= head+tail {
		return s
	}
	return strings.Join(lines[:head], "\n") + fmt.Sprintf("\n(%d lines omitted: see the JUnit report)\n", len(lines)-head-tail) + strings.Join(lines[len(lines)-tail:], "\n")
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) <= n {
		return strings.Join(lines, "\n")
	}
	return fmt.Sprintf("(%d earlier lines omitted)\n", len(lines)-n) + strings.Join(lines[len(lines)-n:], "\n")
}

// The JUnit XML schema CI systems read (Jenkins, GitLab, GitHub actions).
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitCase     `xml:"testcase"`
	SystemOut  string          `xml:"system-out,omitempty"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Classname string        `xml:"classname,attr"`
	Name      string        `xml:"name,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitMessage `xml:"failure"`
	Skipped   *junitMessage `xml:"skipped"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes the report as JUnit XML: one testsuite for the cell,
// one testcase per contract test (classname "<cell>.<line>", e.g.
// "postgres_nats.C2", name the test's), a failure element carrying the
// test's first failure message and its whole output, a skipped element
// with the skip reason. A cell that failed before any contract test ran
// (or a suite process that died outside one) adds a failed testcase named
// "suite".
func (r *Report) WriteJUnit(w io.Writer) error {
	secs := func(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }
	s := junitSuite{
		Name: r.Cell.Cell,
		Time: secs(r.Cell.Duration),
		Properties: []junitProperty{
			{"database", r.DatabaseURL}, {"broker", r.BrokerURL},
			{"broker_promises", promises(r.Cell.Features)}, {"short", fmt.Sprint(r.Cell.Short)}, {"run", r.Run},
		},
	}
	anyFailed := false
	for _, t := range r.Tests {
		c := junitCase{Classname: r.Cell.Cell + "." + t.Line, Name: t.Test, Time: secs(t.Duration)}
		switch t.Status {
		case StatusFail:
			anyFailed = true
			c.Failure = &junitMessage{Message: firstMessage(t.Output), Type: "failure", Text: t.Output}
			s.Failures++
		case StatusSkip:
			c.Skipped = &junitMessage{Message: t.Reason}
			s.Skipped++
		default:
			c.SystemOut = t.Output
		}
		s.Cases = append(s.Cases, c)
	}
	if (r.ExitCode != 0 && !anyFailed) || r.Cell.Skipped != "" {
		c := junitCase{Classname: r.Cell.Cell, Name: "suite", Time: secs(r.Cell.Duration)}
		if r.Cell.Skipped != "" && r.ExitCode == 0 {
			c.Skipped = &junitMessage{Message: r.Cell.Skipped}
			s.Skipped++
		} else {
			c.Failure = &junitMessage{Message: cmp.Or(firstMessage(r.Output), fmt.Sprintf("suite process exit status %d", r.ExitCode)), Type: "error", Text: lastLines(r.Output, 200)}
			s.Failures++
		}
		s.Cases = append(s.Cases, c)
	}
	s.Tests = len(s.Cases)
	if r.Failed() {
		s.SystemOut = lastLines(r.Output, 200)
	}
	doc := junitSuites{Name: "outbox conformance", Tests: s.Tests, Failures: s.Failures, Skipped: s.Skipped, Time: s.Time, Suites: []junitSuite{s}}
	out, err := xml.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	_, err = w.Write(append(out, '\n'))
	return err
}

// firstMessage returns the first "file.go:12: message" line of a test's
// output, without the prefix: usually the failure.
func firstMessage(out string) string {
	for l := range strings.SplitSeq(out, "\n") {
		if fileLineRe.MatchString(l) {
			return strings.TrimSpace(fileLineRe.ReplaceAllString(l, ""))
		}
	}
	for l := range strings.SplitSeq(out, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}
