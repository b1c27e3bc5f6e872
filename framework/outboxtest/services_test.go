package outboxtest

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestSkipLogNamesThePackage: a skipped test is logged with its package, so
// that make test's skip list tells same-named tests of different modules apart.
func TestSkipLogNamesThePackage(t *testing.T) {
	const want = "github.com/outboxkit/outboxkit/framework/outboxtest"
	if got := testPackage(); got != want {
		t.Fatalf("testPackage() = %q, want %q", got, want)
	}
	t.Run("subtest", func(t *testing.T) {
		if got := testPackage(); got != want {
			t.Fatalf("in a subtest: testPackage() = %q, want %q", got, want)
		}
	})
	log := filepath.Join(t.TempDir(), "skips.log")
	t.Setenv("OUTBOX_TEST_SKIPLOG", log)
	logSkip("TestX/cell", want, errors.New("postgres unreachable\tat 127.0.0.1:1"))
	raw, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(raw); got != "TestX/cell\tpostgres unreachable at 127.0.0.1:1\t"+want+"\n" {
		t.Fatalf("skip log line %q", got)
	}
}
