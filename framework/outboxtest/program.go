package outboxtest

import (
	"cmp"
	"fmt"
	"os"
	"testing"
)

// Chromium names the headless browser of the console's browser tests in
// OUTBOX_TEST_REQUIRE (e.g. "postgres,chromium"; "all" includes it).
const Chromium = "chromium"

// ChromiumPath returns OUTBOX_TEST_CHROMIUM or /usr/bin/chromium (Debian's
// package).
func ChromiumPath() string { return cmp.Or(os.Getenv("OUTBOX_TEST_CHROMIUM"), "/usr/bin/chromium") }

// RequireChromium returns the path of the Chromium binary. When it is
// missing it skips the test (logging to OUTBOX_TEST_SKIPLOG), or fails it
// when OUTBOX_TEST_REQUIRE demands chromium, like RequireService.
func RequireChromium(t testing.TB) string {
	t.Helper()
	path := ChromiumPath()
	st, err := os.Stat(path)
	if err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
		return path
	}
	reason := fmt.Errorf("chromium not found at %s (apt-get install chromium, or set OUTBOX_TEST_CHROMIUM)", path)
	if err == nil {
		reason = fmt.Errorf("chromium at %s is not an executable file", path)
	}
	if Required(Chromium) {
		t.Fatalf("required program missing (OUTBOX_TEST_REQUIRE=%s): %v", os.Getenv("OUTBOX_TEST_REQUIRE"), reason)
	}
	logSkip(t.Name(), testPackage(), reason)
	t.Skipf("skipped: %v (set OUTBOX_TEST_REQUIRE=all to fail instead)", reason)
	return ""
}
