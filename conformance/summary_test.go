package conformance

import (
	"strings"
	"testing"
)

// TestSummaryCountsSkippedCells: the count line says how many cells were
// skipped whole (their tests are not in the test counts) and says "1 cell",
// not "1 cells".
func TestSummaryCountsSkippedCells(t *testing.T) {
	ran := CellInfo{Suite: "TestMatrix", Cell: "postgres_nats", Database: "postgres", Broker: "nats"}
	down := CellInfo{Suite: "TestMatrix", Cell: "mysql_nats", Database: "mysql", Broker: "nats", Skipped: "mysql unreachable at 127.0.0.1:3306"}
	results := []Result{
		{Suite: "TestMatrix", Cell: "postgres_nats", Line: "C1", Test: "commit_publishes", Status: StatusPass},
		{Suite: "TestMatrix", Cell: "postgres_nats", Line: "C2", Test: "broker_cut", Status: StatusSkip, Reason: "no proxy"},
	}
	for _, tc := range []struct {
		cells []CellInfo
		want  string
	}{
		{[]CellInfo{ran}, "\n1 cell; 1 test passed, 0 failed, 1 skipped.\n"},
		{[]CellInfo{ran, down}, "\n2 cells (1 skipped whole, service unreachable: their tests are not counted); 1 test passed, 0 failed, 1 skipped.\n"},
	} {
		if got := summaryTable(results, tc.cells); !strings.Contains(got, tc.want) {
			t.Errorf("summary lacks %q:\n%s", tc.want, got)
		}
	}
}
