package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"flag"
	"fmt"
	"image/png"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/outboxkit/outboxkit/brokers/memory"
	"github.com/outboxkit/outboxkit/drivers/postgres"
	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

var updateScreenshots = flag.Bool("update-screenshots", false, "write the console screenshots to docs/images")

// Hostile values: HTML, script, terminal escapes (OSC title, clear screen,
// BEL) and, in the payload (bytea), invalid UTF-8. PostgreSQL text columns
// reject invalid UTF-8 and NUL, so key, type and last error carry the rest.
const (
	xssKey   = `<img src=x onerror="window.__xss=1">`
	xssType  = `<script>window.__xss=2</script>`
	xssError = "<img src=x onerror=window.__xss=5>\x1b]0;pwned\x07\x1b[2J</pre>"
)

var xssPayload = []byte("<script>window.__xss=3</script>\x1b[31mRED\xff\xfe<img src=x onerror=window.__xss=4>")

// uiFixture is the seeded table, the relay delivering it, and the ids of
// the interesting events.
type uiFixture struct {
	table    string
	db       *sql.DB
	ob       *outbox.Outbox
	received func(id string) bool
	ids      map[string]string // key -> event id
}

func setupUI(t *testing.T) *uiFixture {
	t.Helper()
	table, db, ob := setupDB(t)
	f := &uiFixture{table: table, db: db, ob: ob, ids: map[string]string{}}
	ctx := context.Background()
	insert := func(status, topic, typ, key string, payload []byte, headers map[string]string, set string) string {
		t.Helper()
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		e := &outbox.Event{Type: typ, Topic: topic, Key: key, Payload: payload, Headers: headers}
		if err := ob.Insert(ctx, tx, e); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if set != "" {
			if _, err := db.Exec(`UPDATE "`+table+`" SET `+set+` WHERE id = $1`, e.ID); err != nil {
				t.Fatalf("seed %s: %v", status, err)
			}
		}
		f.ids[key] = e.ID
		return e.ID
	}
	topics := []string{"invoices", "billing", "shipping"}
	types := []string{"care.invoice.issued", "care.invoice.paid", "care.parcel.sent"}
	seedDelivered(t, db, ob, table, topics, types)
	for i := range 4 { // pending, in backoff for an hour: the relay leaves them alone
		insert("pending", topics[i%3], types[0], fmt.Sprintf("PND-%d", i), []byte(`{"amount":"12.50"}`), nil,
			`attempts = 1, last_error = 'broker: connection refused', next_attempt_at = now() + interval '1 hour',
				created_at = now() - interval '12 minutes'`)
	}
	dead := func(topic, key, lastErr string) {
		insert("dead", topic, "care.invoice.issued", key,
			[]byte(`{"invoice":"`+key+`","amount":"25.00","patient":{"id":42,"insurer":"CPAM"}}`),
			map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tenant": "care-center-7"},
			`status = 'dead', attempts = 8, last_error = '`+lastErr+`'`)
	}
	for i := 1; i <= 3; i++ {
		dead("billing", fmt.Sprintf("INV-DEAD-%d", i), "teletransmission: 503 Service Unavailable (no acknowledgement)")
	}
	for i := 1; i <= 2; i++ {
		dead("invoices", fmt.Sprintf("INV-TIMEOUT-%d", i), "context deadline exceeded")
	}
	id := insert("dead", "billing", xssType, xssKey, xssPayload, map[string]string{"x-note": "<b>bold</b>\x1b[1m"}, "")
	if _, err := db.Exec(`UPDATE "`+table+`" SET status = 'dead', attempts = 8, last_error = $2 WHERE id = $1`, id, xssError); err != nil {
		t.Fatal(err)
	}

	// A running relay on the in-process broker, with a subscriber.
	drv, err := postgres.New(db, postgres.Config{Table: table})
	if err != nil {
		t.Fatal(err)
	}
	broker, err := memory.New(memory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	var mu sync.Mutex
	got := map[string]bool{}
	for _, topic := range topics {
		msgs, err := broker.Subscribe(rctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for m := range msgs {
				mu.Lock()
				got[m.Metadata.Get(outbox.MetadataEventID)] = true
				mu.Unlock()
				m.Ack()
			}
		}()
	}
	f.received = func(id string) bool { mu.Lock(); defer mu.Unlock(); return got[id] }
	relay, err := outbox.NewRelay(drv, broker, outbox.RelayConfig{PollInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = relay.Run(rctx) }()
	t.Cleanup(func() { stop(); <-done; broker.Close() })
	return f
}

// seedDelivered writes the last hour's deliveries the charts draw: a few
// events per topic and minute, with a delivery lag per topic (shipping's
// grows: the picture an operator should notice).
func seedDelivered(t *testing.T, db *sql.DB, ob *outbox.Outbox, table string, topics, types []string) {
	t.Helper()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	var ids, agos, lags []string
	for m := range 58 {
		for ti, topic := range topics {
			n := 1 + int(2.5+2.5*math.Sin(float64(m+ti*20)/7))
			for k := range n {
				e := &outbox.Event{Type: types[(m+k+ti)%3], Topic: topic, Key: fmt.Sprintf("DLV-%d-%d-%d", m, ti, k), Payload: []byte(`{"n":1}`)}
				if err := ob.Insert(context.Background(), tx, e); err != nil {
					t.Fatal(err)
				}
				lag := []float64{2 + math.Sin(float64(m)/5), 1, 1 + float64(57-m)/8}[ti]
				ids, agos, lags = append(ids, e.ID), append(agos, fmt.Sprint(m)), append(lags, fmt.Sprint(int(lag*1000)))
			}
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	_, err = db.Exec(`UPDATE "`+table+`" o SET status = 'delivered', attempts = 1,
		delivered_at = now() - u.ago * interval '1 minute',
		created_at = now() - u.ago * interval '1 minute' - u.lag_ms * interval '1 millisecond'
	FROM unnest(string_to_array($1, ',')::uuid[], string_to_array($2, ',')::int[], string_to_array($3, ',')::int[]) AS u(id, ago, lag_ms)
	WHERE o.id = u.id`, strings.Join(ids, ","), strings.Join(agos, ","), strings.Join(lags, ","))
	if err != nil {
		t.Fatal(err)
	}
}

// startUI runs the real binary's `outbox ui` and returns its base URL.
func startUI(t *testing.T, table string, extra ...string) string {
	t.Helper()
	args := append([]string{"ui", "--db-url", outboxtest.PostgresURL(), "--table", table,
		"--listen", "127.0.0.1:0", "--refresh", "300ms"}, extra...)
	cmd := command(nil, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("outbox ui did not start: %v; stderr: %s", err, stderr.String())
	}
	m := regexp.MustCompile(`serving (http://\S+)/ `).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("unexpected first line %q", line)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	return m[1]
}

// browser starts headless Chromium with a fresh profile and no network
// features beyond loopback.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := outboxtest.RequireChromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1360, 1000),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelT(); cancelB(); cancelA() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium %s: %v", path, err)
	}
	return ctx
}

func run1(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// waitJS polls a boolean JavaScript expression until it is true on a
// completely loaded page.
func waitJS(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.readyState === "complete" && (`+expr+`)`, chromedp.EvalAwaitPromise))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (%s): %v", what, expr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// do runs a statement in the page (a click, a form change).
func do(t *testing.T, ctx context.Context, what, stmt string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("("+stmt+", true)")); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("read %s: %v", sel, err)
	}
	return s
}

func evalBool(t *testing.T, ctx context.Context, expr string) bool {
	t.Helper()
	b, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return b
}

// noInjection asserts that no injected script ran and no injected element
// exists on the current page: the only script is the console's own.
func noInjection(t *testing.T, ctx context.Context, page string) {
	t.Helper()
	if evalBool(t, ctx, `window.__xss !== undefined`) {
		t.Fatalf("%s: an injected script ran", page)
	}
	if evalBool(t, ctx, `document.querySelectorAll("img, iframe, object, embed").length > 0`) {
		t.Fatalf("%s: an injected element exists", page)
	}
	if evalBool(t, ctx, `document.scripts.length !== 1 || !document.scripts[0].src.endsWith("/static/app.js")`) {
		t.Fatalf("%s: unexpected script elements", page)
	}
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	img, err := png.Decode(bytes.NewReader(buf))
	if err != nil {
		t.Fatalf("screenshot %s is not a PNG: %v", name, err)
	}
	if b := img.Bounds(); b.Dx() < 800 || b.Dy() < 400 {
		t.Fatalf("screenshot %s is only %v", name, b)
	}
	dir := t.TempDir()
	if *updateScreenshots {
		dir = filepath.Join("..", "..", "docs", "images")
	}
	if err := os.WriteFile(filepath.Join(dir, name), buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestUIBrowser drives the console in headless Chromium against PostgreSQL
// and a running relay: overview with live refresh and charts, filtering,
// a dead event retried and delivered, a dead group retried after a dry-run
// count, hostile values shown as text, and a forged CSRF token refused.
func TestUIBrowser(t *testing.T) {
	t.Parallel()
	ctx := browser(t)
	f := setupUI(t)
	base := startUI(t, f.table, "--allow-actions")

	// Overview: counts, charts drawn as SVG, live refresh running.
	run1(t, ctx, "overview", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#charts svg")))
	waitJS(t, ctx, "live refresh", `Number(document.body.getAttribute("data-live-seq")) >= 2`)
	if got := text(t, ctx, `[data-stat="dead"]`); got != "6" {
		t.Fatalf("dead count %q, want 6", got)
	}
	if got := text(t, ctx, `[data-stat="pending"]`); got != "4" {
		t.Fatalf("pending count %q, want 4", got)
	}
	if n := evalBool(t, ctx, `document.querySelectorAll("#charts svg path[d^='M']").length >= 9`); !n {
		t.Fatal("charts have no lines (want 3 topics x 3 charts)")
	}
	if !strings.Contains(text(t, ctx, "#relays"), "Not reported by this driver") {
		t.Fatal("relays section does not say the driver cannot tell")
	}
	noInjection(t, ctx, "overview")
	screenshot(t, ctx, "ui-overview.png")

	// Filter: dead events of topic billing.
	run1(t, ctx, "filter",
		chromedp.Navigate(base+"/events"), chromedp.WaitVisible(chromedp.CSS("#filters")),
		chromedp.SetValue(chromedp.CSS(`select[name="status"]`), "dead"),
		chromedp.SendKeys(chromedp.CSS(`input[name="topic"]`), "billing"),
		chromedp.Click(chromedp.CSS("#apply")))
	waitJS(t, ctx, "filtered list", `location.search.includes("status=dead") && location.search.includes("topic=billing")`)
	rows := `[...document.querySelectorAll("#events tr")].slice(1)`
	if !evalBool(t, ctx, rows+`.length === 4 && `+rows+`.every(r => r.cells[1].textContent === "dead" && r.cells[2].textContent === "billing")`) {
		got, _ := chromedp.Run(ctx, chromedp.Evaluate[string](rows+`.map(r => r.textContent).join(" | ")`))
		t.Fatalf("filtered rows: %s", got)
	}
	noInjection(t, ctx, "event list")

	// Cursor paging over the delivered history (50 a page).
	run1(t, ctx, "delivered list", chromedp.Navigate(base+"/events?status=delivered"), chromedp.WaitVisible(chromedp.CSS("#next")))
	lastSeq := `Number(` + rows + `.at(-1).cells[0].textContent)`
	page1Last, err := chromedp.Run(ctx, chromedp.Evaluate[int](lastSeq))
	if err != nil {
		t.Fatal(err)
	}
	run1(t, ctx, "next page", chromedp.Click(chromedp.CSS("#next")))
	waitJS(t, ctx, "second page", `location.search.includes("after=`+fmt.Sprint(page1Last)+`")`)
	if !evalBool(t, ctx, rows+`.length === 50 && Number(`+rows+`[0].cells[0].textContent) > `+fmt.Sprint(page1Last)+
		` && `+rows+`.every(r => r.cells[1].textContent === "delivered")`) {
		t.Fatal("second page does not continue after the first")
	}

	// Back to the filtered dead events of topic billing.
	run1(t, ctx, "filtered again", chromedp.Navigate(base+"/events?status=dead&topic=billing"), chromedp.WaitVisible(chromedp.CSS("#events")))

	// Open a dead event from the list.
	id := f.ids["INV-DEAD-1"]
	do(t, ctx, "open dead event", rows+`.find(r => r.cells[4].textContent === "INV-DEAD-1").querySelector("a").click()`)
	waitJS(t, ctx, "dead event page", `location.pathname.endsWith("/events/`+id+`")`)
	run1(t, ctx, "detail", chromedp.WaitVisible(chromedp.CSS("#payload")))
	if got := text(t, ctx, "#status"); got != "dead" {
		t.Fatalf("status %q", got)
	}
	if got := text(t, ctx, "#lasterror"); !strings.Contains(got, "503 Service Unavailable") {
		t.Fatalf("last error %q", got)
	}
	if got := text(t, ctx, "#payload"); !strings.Contains(got, "\n  \"patient\": {\n    \"id\": 42,") {
		t.Fatalf("payload not pretty-printed: %q", got)
	}
	if got := text(t, ctx, "#fields"); !strings.Contains(got, "4bf92f3577b34da6a3ce929d0e0e4736") {
		t.Fatalf("trace id missing: %q", got)
	}
	screenshot(t, ctx, "ui-dead-event.png")

	// Retry it: confirmation with its count, then the relay delivers it.
	run1(t, ctx, "retry", chromedp.Click(chromedp.CSS("#retry")), chromedp.WaitVisible(chromedp.CSS("#drycount")))
	if got := text(t, ctx, "#drycount"); got != "1" {
		t.Fatalf("dry-run count %q", got)
	}
	run1(t, ctx, "confirm", chromedp.Click(chromedp.CSS("#doit")), chromedp.WaitVisible(chromedp.CSS("#message")))
	if got := text(t, ctx, "#message"); got != "1 event made pending again." {
		t.Fatalf("retry result %q", got)
	}
	waitJS(t, ctx, "event delivered", `(async () => {
		const r = await fetch(location.origin + "/events/`+id+`");
		return (await r.text()).includes('id="status">delivered<');
	})()`)
	waitUntil(t, "the broker to hand the retried event to its subscriber", func() bool { return f.received(id) })
	run1(t, ctx, "reload detail", chromedp.Navigate(base+"/events/"+id), chromedp.WaitVisible(chromedp.CSS("#status")))
	if got := text(t, ctx, "#status"); got != "delivered" {
		t.Fatalf("status after retry %q", got)
	}

	// Dead group "retry these": dry-run count, then both retried.
	run1(t, ctx, "dead groups", chromedp.Navigate(base+"/dead"), chromedp.WaitVisible(chromedp.CSS("#groups")))
	noInjection(t, ctx, "dead groups")
	do(t, ctx, "retry group", `[...document.querySelectorAll("#groups tr")].find(r => r.textContent.includes("context deadline exceeded")).querySelector("a.retry-group").click()`)
	waitJS(t, ctx, "group confirmation", `!!document.getElementById("drycount")`)
	if got := text(t, ctx, "#drycount"); got != "2" {
		t.Fatalf("group dry-run count %q, want 2", got)
	}
	run1(t, ctx, "confirm group", chromedp.Click(chromedp.CSS("#doit")), chromedp.WaitVisible(chromedp.CSS("#message")))
	if got := text(t, ctx, "#message"); got != "2 dead events made pending again." {
		t.Fatalf("group retry result %q", got)
	}
	waitUntil(t, "the group delivered", func() bool {
		return f.received(f.ids["INV-TIMEOUT-1"]) && f.received(f.ids["INV-TIMEOUT-2"])
	})

	// Hostile values render as text.
	xid := f.ids[xssKey]
	run1(t, ctx, "xss event", chromedp.Navigate(base+"/events/"+xid), chromedp.WaitVisible(chromedp.CSS("#payload")))
	noInjection(t, ctx, "hostile event")
	for sel, want := range map[string]string{
		"#f-key":  xssKey,
		"#f-type": xssType,
	} {
		if got := text(t, ctx, sel); got != want {
			t.Errorf("%s shows %q, want the text %q", sel, got, want)
		}
	}
	if got, want := text(t, ctx, "#payload"), `<script>window.__xss=3</script>\x1b[31mRED\xff\xfe<img src=x onerror=window.__xss=4>`; got != want {
		t.Errorf("payload shows %q, want %q", got, want)
	}
	if got, want := text(t, ctx, "#lasterror"), `<img src=x onerror=window.__xss=5>\x1b]0;pwned\x07\x1b[2J</pre>`; got != want {
		t.Errorf("last error shows %q, want %q", got, want)
	}
	if got := text(t, ctx, "#headers"); !strings.Contains(got, `<b>bold</b>\x1b[1m`) {
		t.Errorf("header shows %q", got)
	}
	run1(t, ctx, "list with hostile rows", chromedp.Navigate(base+"/events?status=dead"), chromedp.WaitVisible(chromedp.CSS("#events")))
	noInjection(t, ctx, "list with hostile rows")
	if !strings.Contains(text(t, ctx, "#events"), xssKey) {
		t.Error("hostile key not shown as text in the list")
	}
	run1(t, ctx, "overview with hostile group", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#charts")))
	noInjection(t, ctx, "overview with hostile group")

	// A forged CSRF token is refused and nothing changes.
	did := f.ids["INV-DEAD-3"]
	run1(t, ctx, "forged csrf", chromedp.Navigate(base+"/confirm?action=retry&id="+did), chromedp.WaitVisible(chromedp.CSS("#confirmform")))
	do(t, ctx, "forge the token", `document.querySelector("input[name=csrf]").value = "0".repeat(32), document.getElementById("confirmform").submit()`)
	waitJS(t, ctx, "refusal page", `!!document.getElementById("message")`)
	if got := text(t, ctx, "#message"); !strings.Contains(got, "CSRF") {
		t.Fatalf("forged token: %q", got)
	}
	if e, err := f.ob.Get(context.Background(), did); err != nil || e.Status != outbox.StatusDead {
		t.Fatalf("after a forged token the event is %v (%v), want dead", e.Status, err)
	}
}

// uiClient is an HTTP client that keeps cookies but never follows
// redirects.
func uiClient() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(t *testing.T, c *http.Client, u string) (int, string, []*http.Cookie) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Cookies()
}

func post(t *testing.T, base string, form url.Values, cookie *http.Cookie, header map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/actions/retry", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	resp, err := uiClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var csrfFieldRe = regexp.MustCompile(`name="csrf" value="([0-9a-f]{32})"`)

// TestUIActionsRefusedHTTP checks at the HTTP level that actions need the
// CSRF token, the confirmation and a same-origin request, and that a
// read-only console refuses them whatever the request carries.
func TestUIActionsRefusedHTTP(t *testing.T) {
	t.Parallel()
	f := setupUI(t)
	id := f.ids["INV-DEAD-2"]
	stillDead := func(step string) {
		t.Helper()
		e, err := f.ob.Get(context.Background(), id)
		if err != nil || e.Status != outbox.StatusDead {
			t.Fatalf("%s: event is %v (%v), want still dead", step, e.Status, err)
		}
	}
	rw := startUI(t, f.table, "--allow-actions")
	ro := startUI(t, f.table)

	code, body, cookies := get(t, uiClient(), rw+"/confirm?action=retry&id="+id)
	m := csrfFieldRe.FindStringSubmatch(body)
	if code != 200 || m == nil || len(cookies) != 1 || cookies[0].Value != m[1] {
		t.Fatalf("confirm page: %d, token %v, cookies %v", code, m, cookies)
	}
	cookie, token := cookies[0], m[1]
	ok := url.Values{"id": {id}, "csrf": {token}, "confirm": {"yes"}}
	with := func(k, v string) url.Values {
		f := url.Values{}
		for kk, vv := range ok {
			f[kk] = vv
		}
		if v == "" {
			f.Del(k)
		} else {
			f.Set(k, v)
		}
		return f
	}
	for _, c := range []struct {
		name   string
		form   url.Values
		cookie *http.Cookie
		header map[string]string
		want   int
	}{
		{"no token, no cookie", with("csrf", ""), nil, nil, 403},
		{"no token", with("csrf", ""), cookie, nil, 403},
		{"no cookie", ok, nil, nil, 403},
		{"wrong token", with("csrf", strings.Repeat("a", 32)), cookie, nil, 403},
		{"not confirmed", with("confirm", ""), cookie, nil, 400},
		{"cross-site", ok, cookie, map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"other origin", ok, cookie, map[string]string{"Origin": "http://evil.example"}, 403},
	} {
		if code, body := post(t, rw, c.form, c.cookie, c.header); code != c.want {
			t.Fatalf("%s: status %d, want %d: %s", c.name, code, c.want, body)
		}
		stillDead(c.name)
	}

	// Read-only: no action link, confirmation and action refused.
	code, body, _ = get(t, uiClient(), ro+"/events/"+id)
	if code != 200 || strings.Contains(body, `id="retry"`) || !strings.Contains(body, "read-only") {
		t.Fatalf("read-only event page: %d, has retry link: %v", code, strings.Contains(body, `id="retry"`))
	}
	if code, _, _ := get(t, uiClient(), ro+"/confirm?action=retry&id="+id); code != 403 {
		t.Fatalf("read-only confirm page: %d, want 403", code)
	}
	if code, body := post(t, ro, ok, cookie, nil); code != 403 || !strings.Contains(body, "read-only") {
		t.Fatalf("read-only action: %d %s", code, body)
	}
	stillDead("read-only")

	// The same request, valid, does retry (so the refusals above were the
	// checks, not a broken endpoint).
	if code, body := post(t, rw, ok, cookie, nil); code != 200 || !strings.Contains(body, "1 event made pending again.") {
		t.Fatalf("valid action: %d %s", code, body)
	}
	waitUntil(t, "the retried event delivered", func() bool { return f.received(id) })
}

// TestUIListenRules checks that listening beyond loopback needs
// authentication, and that the token and basic auth are enforced.
func TestUIListenRules(t *testing.T) {
	t.Parallel()
	r := runCLI(t, nil, "ui", "--db-url", outboxtest.PostgresURL(), "--listen", "0.0.0.0:0")
	if r.code != exitUsage || !strings.Contains(r.stderr, "beyond loopback") || !strings.Contains(r.stderr, "--auth-token") {
		t.Fatalf("open listen without auth: %d %q", r.code, r.stderr)
	}
	r = runCLI(t, nil, "ui", "--db-url", outboxtest.PostgresURL(), "--listen", ":0")
	if r.code != exitUsage {
		t.Fatalf("all-interfaces listen without auth: %d %q", r.code, r.stderr)
	}
	f := setupUI(t)

	base := startUI(t, f.table, "--auth-token", "s3cret-token")
	if code, _, _ := get(t, uiClient(), base+"/"); code != 401 {
		t.Fatalf("no token: %d", code)
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/", nil)
	req.Header.Set("Authorization", "Bearer wrong")
	if resp, err := uiClient().Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("wrong bearer: %v %v", resp, err)
	}
	req.Header.Set("Authorization", "Bearer s3cret-token")
	if resp, err := uiClient().Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("bearer: %v %v", resp, err)
	}
	code, _, cookies := get(t, uiClient(), base+"/events?token=s3cret-token&status=dead")
	if code != 303 || len(cookies) != 1 {
		t.Fatalf("?token=: %d %v", code, cookies)
	}
	req, _ = http.NewRequest(http.MethodGet, base+"/events?status=dead", nil)
	req.AddCookie(cookies[0])
	if resp, err := uiClient().Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("token cookie: %v %v", resp, err)
	}

	// The database password never reaches a page (trust authentication
	// ignores it; a URL that already has one keeps it).
	dbURL, _ := url.Parse(outboxtest.PostgresURL())
	password, ok := dbURL.User.Password()
	if !ok {
		password = "hunter2-db-secret"
		dbURL.User = url.UserPassword(dbURL.User.Username(), password)
	}
	base = startUI(t, f.table, "--basic-auth", "ops:pa55", "--db-url", dbURL.String())
	for _, path := range []string{"/", "/events", "/dead", "/events/" + f.ids["INV-DEAD-1"], "/events?since=garbage", "/events/nope"} {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.SetBasicAuth("ops", "pa55")
		resp, err := uiClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), password) || strings.Contains(string(b), "pa55") {
			t.Fatalf("%s shows a secret", path)
		}
	}

	req, _ = http.NewRequest(http.MethodGet, base+"/", nil)
	req.SetBasicAuth("ops", "wrong")
	if resp, err := uiClient().Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("wrong basic: %v %v", resp, err)
	}
	req.SetBasicAuth("ops", "pa55")
	resp, err := uiClient().Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("basic: %v %v", resp, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(b), "pa55") || strings.Contains(string(b), "postgres://") {
		t.Fatal("the page shows a secret")
	}
}
