package conformance

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

// Status is the outcome of one test of a cell.
type Status string

// The statuses a Result can have.
const (
	// StatusPass means the test ran and passed.
	StatusPass Status = "pass"
	// StatusFail means the test ran and failed.
	StatusFail Status = "fail"
	// StatusSkip means the test did not run; Result.Reason says why.
	StatusSkip Status = "skip"
)

// Lines are the contract lines of DESIGN.md, in the order the summary shows
// them.
var Lines = []string{"C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8"}

// Result is the outcome of one test Run ran, or of a whole cell that was
// skipped before any test ran (Line and Test empty).
type Result struct {
	// Suite is the name of the top-level test that called Run, e.g.
	// "TestMatrix".
	Suite string
	// Cell is Harness.Name.
	Cell string
	// Line is the contract line, "C1" … "C8".
	Line string
	// Test is the test's name inside its line, e.g. "broker_cut".
	Test string
	// Status is pass, fail or skip.
	Status Status
	// Reason is the skip reason; empty otherwise.
	Reason string
	// Duration is the test's wall time (the cell's for a cell Result).
	Duration time.Duration
}

// CellInfo is what the summary shows about a cell besides its results.
type CellInfo struct {
	// Suite is the top-level test that ran the cell.
	Suite string
	// Cell is Harness.Name.
	Cell string
	// Database and Broker are the sides' names.
	Database, Broker string
	// Features are the broker's.
	Features Features
	// Light reports Harness.Light (reduced counts).
	Light bool
	// Publish reports Harness.Publish (empty: the relay's default).
	Publish outbox.PublishPath `json:",omitempty"`
	// DeletesDelivered reports Database.DeletesDelivered.
	DeletesDelivered bool `json:",omitempty"`
	// Concurrency reports Harness.Concurrency (zero: the relay's default).
	Concurrency int `json:",omitempty"`
	// Short reports testing.Short() for the run.
	Short bool
	// Duration is the cell's wall time, all its tests included.
	Duration time.Duration
	// Skipped holds why the whole cell did not run (a missing service);
	// empty when it ran.
	Skipped string
}

var (
	resultsMu sync.Mutex
	results   []Result
	cells     []CellInfo
	skipWhy   = map[string]string{} // t.Name() -> reason
)

// skipf records why t is skipped, for the summary, and skips it.
func skipf(t testing.TB, format string, args ...any) {
	t.Helper()
	reason := fmt.Sprintf(format, args...)
	resultsMu.Lock()
	skipWhy[t.Name()] = reason
	resultsMu.Unlock()
	t.Skip(reason)
}

// suiteOf returns the top-level test name of a test name.
func suiteOf(name string) string {
	suite, _, _ := strings.Cut(name, "/")
	return suite
}

// recordTest is registered by Run as the first cleanup of every test, so it
// runs last and sees the final status.
func recordTest(t *testing.T, h Harness, line, test string, start time.Time) {
	r := Result{Suite: suiteOf(t.Name()), Cell: h.Name, Line: line, Test: test, Duration: time.Since(start)}
	resultsMu.Lock()
	defer resultsMu.Unlock()
	switch {
	case t.Failed():
		r.Status = StatusFail
	case t.Skipped():
		r.Status = StatusSkip
		r.Reason = cmp.Or(skipWhy[t.Name()], "skipped")
	default:
		r.Status = StatusPass
	}
	results = append(results, r)
}

// recordCell is registered by Run as the cell test's first cleanup: it runs
// once every test of the cell finished.
func recordCell(t *testing.T, h Harness, start time.Time) {
	c := CellInfo{
		Suite: suiteOf(t.Name()), Cell: h.Name, Database: h.Database.Name, Broker: h.Broker.Name,
		Features: h.Broker.Features, Light: h.Light, Publish: h.Publish, DeletesDelivered: h.Database.DeletesDelivered, Concurrency: h.Concurrency, Short: testing.Short(), Duration: time.Since(start),
	}
	if t.Skipped() {
		c.Skipped = "skipped"
		for _, s := range append(slices.Clone(h.Database.Services), h.Broker.Services...) {
			if err := outboxtest.Reachable(s); err != nil {
				c.Skipped = err.Error()
				break
			}
		}
	}
	resultsMu.Lock()
	defer resultsMu.Unlock()
	cells = append(cells, c)
}

// Results returns the outcome of every test Run ran in this process so far,
// and the cells it ran.
func Results() ([]Result, []CellInfo) {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	return slices.Clone(results), slices.Clone(cells)
}

// WriteSummary writes the results of the cells of suite (a top-level test
// name such as "TestMatrix") as a Markdown table: one row per cell, one
// column per contract line, each entry "✓" when every test of the line
// passed, "✗ name…" naming the failed tests, and the skipped tests with a
// numbered reason listed under the table. It returns the number of cells
// written.
func WriteSummary(w io.Writer, suite string) (int, error) {
	allResults, allCells := Results()
	var cs []CellInfo
	for _, c := range allCells {
		if c.Suite == suite {
			cs = append(cs, c)
		}
	}
	var rs []Result
	for _, r := range allResults {
		if r.Suite == suite {
			rs = append(rs, r)
		}
	}
	_, err := io.WriteString(w, summaryTable(rs, cs))
	return len(cs), err
}

// summaryTable renders the summary of WriteSummary for the given results
// and cells (of one suite).
func summaryTable(all []Result, cs []CellInfo) string {
	cs = slices.Clone(cs)
	slices.SortStableFunc(cs, func(a, b CellInfo) int {
		return cmp.Or(cmp.Compare(a.Database, b.Database), cmp.Compare(a.Broker, b.Broker), cmp.Compare(a.Cell, b.Cell))
	})
	var b strings.Builder
	b.WriteString("| cell | broker promises | counts | time |")
	for _, l := range Lines {
		b.WriteString(" " + l + " |")
	}
	b.WriteString("\n|---|---|---|---:|")
	for range Lines {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	var notes []string
	note := func(text string) int {
		if i := slices.Index(notes, text); i >= 0 {
			return i + 1
		}
		notes = append(notes, text)
		return len(notes)
	}
	var pass, fail, skip int
	for _, c := range cs {
		counts := "full"
		if c.Short {
			counts = "short"
		} else if c.Light {
			counts = "light"
		}
		var variant []string
		if c.Publish != "" {
			variant = append(variant, "publish "+string(c.Publish))
		}
		if c.DeletesDelivered {
			variant = append(variant, "deletes delivered")
		}
		if c.Concurrency > 1 {
			variant = append(variant, fmt.Sprintf("concurrency %d", c.Concurrency))
		}
		cell := c.Database + " × " + c.Broker
		if len(variant) > 0 {
			cell += " (" + strings.Join(variant, ", ") + ")"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |", cell, promises(c.Features), counts, c.Duration.Round(time.Second))
		for _, l := range Lines {
			if c.Skipped != "" {
				fmt.Fprintf(&b, " skipped [%d] |", note(c.Skipped))
				continue
			}
			var passed, failed []string
			skipped := map[string][]string{} // reason -> tests
			var reasons []string
			for _, r := range all {
				if r.Cell != c.Cell || r.Line != l {
					continue
				}
				switch r.Status {
				case StatusPass:
					passed = append(passed, r.Test)
					pass++
				case StatusFail:
					failed = append(failed, r.Test)
					fail++
				case StatusSkip:
					if _, ok := skipped[r.Reason]; !ok {
						reasons = append(reasons, r.Reason)
					}
					skipped[r.Reason] = append(skipped[r.Reason], r.Test)
					skip++
				}
			}
			var parts []string
			switch {
			case len(failed) > 0:
				slices.Sort(failed)
				parts = append(parts, "✗ "+strings.Join(failed, ", "))
			case len(passed) > 0:
				parts = append(parts, "✓")
			case len(skipped) == 0:
				parts = append(parts, "—")
			}
			slices.Sort(reasons)
			for _, reason := range reasons {
				tests := skipped[reason]
				slices.Sort(tests)
				parts = append(parts, fmt.Sprintf("skip %s [%d]", strings.Join(tests, ", "), note(reason)))
			}
			fmt.Fprintf(&b, " %s |", strings.Join(parts, "; "))
		}
		b.WriteString("\n")
	}
	b.WriteString("\n" + countLine(cs, pass, fail, skip) + "\n")
	if len(notes) > 0 {
		b.WriteString("\n")
		for i, n := range notes {
			fmt.Fprintf(&b, "[%d] %s  \n", i+1, strings.ReplaceAll(n, "|", `\|`))
		}
	}
	return b.String()
}

// countLine is the summary's last line: cells (and how many were skipped
// whole, their tests then not counted), then tests.
func countLine(cs []CellInfo, pass, fail, skip int) string {
	skippedCells := 0
	for _, c := range cs {
		if c.Skipped != "" {
			skippedCells++
		}
	}
	cells := plural(len(cs), "cell")
	if skippedCells > 0 {
		cells += fmt.Sprintf(" (%d skipped whole, service unreachable: their tests are not counted)", skippedCells)
	}
	return fmt.Sprintf("%s; %s passed, %d failed, %d skipped.", cells, plural(pass, "test"), fail, skip)
}

// plural returns "1 cell", "2 cells".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// promises renders a broker's Features in a few words.
func promises(f Features) string {
	var p []string
	switch {
	case f.NativeDedup:
		p = append(p, "native dedup")
	case f.DedupSlot != "":
		p = append(p, "id slot")
	default:
		p = append(p, "no id slot")
	}
	if f.PerKeyOrder {
		p = append(p, "per-key order")
	} else {
		p = append(p, "no order")
	}
	if !f.Networked {
		p = append(p, "in-process")
	}
	return strings.Join(p, ", ")
}

// SummaryEnv names the environment variable that makes FinishMatrix write
// the Markdown summary to a file.
const SummaryEnv = "OUTBOX_CONFORMANCE_SUMMARY"

// FinishMatrix is meant for TestMain, after m.Run: when this process ran
// cells of suite (and is not a subprocess relay), it prints the summary
// table to stdout and, when the environment variable SummaryEnv names a
// file, writes it there too. It returns the first write error.
func FinishMatrix(suite string) error {
	if os.Getenv(childEnv) != "" {
		return nil
	}
	var b strings.Builder
	n, err := WriteSummary(&b, suite)
	if err != nil || n == 0 {
		return err
	}
	fmt.Printf("\nconformance summary (%s):\n\n%s\n", suite, b.String())
	if path := os.Getenv(SummaryEnv); path != "" {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			return fmt.Errorf("conformance: write summary: %w", err)
		}
	}
	return nil
}
