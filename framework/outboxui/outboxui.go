// Package outboxui is a web console for an outbox: counts by status, charts
// of the last hour's deliveries and lag per topic and type, the event list
// with filters and cursor paging, event details, dead events grouped by last
// error, and (when allowed) retry and purge with a confirmation step.
//
// It is an http.Handler a service mounts under its own admin router, behind
// that router's authentication:
//
//	ui, err := outboxui.New(ob, outboxui.Config{BasePath: "/admin/outbox"})
//	if err != nil { ... }
//	defer ui.Close()
//	mux.Handle("/admin/outbox/", http.StripPrefix("/admin/outbox", ui))
//
// The `outbox ui` command of cmd/outbox serves it stand-alone.
//
// Everything is server-rendered with html/template (every stored value is
// escaped; control characters, terminal escapes and invalid UTF-8 are shown
// as visible \xNN escapes) and the assets are embedded: no CDN, works
// offline. One small script keeps the overview live through server-sent
// events fed by one shared poller, so the database sees one stats query per
// interval whatever the number of open browsers.
//
// The console is read-only unless Config.AllowActions is set. Actions are
// POSTs that need the page's CSRF token (a double-submit cookie, plus Go's
// cross-origin protection) and a confirmation page first.
package outboxui

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// Defaults of Config.
const (
	DefaultRefreshInterval  = 2 * time.Second
	DefaultActivityInterval = 15 * time.Second
	DefaultMaxPayloadShown  = 64 << 10
	DefaultPageSize         = 50
)

// Config configures the console.
type Config struct {
	// BasePath is the path the handler is mounted under (after
	// http.StripPrefix), used to build links, e.g. "/admin/outbox". Empty
	// means the root. It must start with "/" and not end with one.
	BasePath string

	// AllowActions enables retry and purge. False (the default) makes the
	// console read-only: action buttons are not shown and action requests
	// are refused with 403.
	AllowActions bool

	// RefreshInterval is how often the shared poller reads the stats while
	// at least one browser watches the overview. Zero means 2s.
	RefreshInterval time.Duration

	// ActivityInterval is how often the per-topic and per-type charts of
	// the last hour are recomputed (one bounded query). Zero means 15s.
	ActivityInterval time.Duration

	// MaxPayloadShown truncates payloads on the detail page. Zero means
	// 64 KiB.
	MaxPayloadShown int

	// PageSize is the event list's page size. Zero means 50; at most 1000.
	PageSize int

	// Logger receives errors. Nil discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	c.RefreshInterval = cmp.Or(c.RefreshInterval, DefaultRefreshInterval)
	c.ActivityInterval = cmp.Or(c.ActivityInterval, DefaultActivityInterval)
	c.MaxPayloadShown = cmp.Or(c.MaxPayloadShown, DefaultMaxPayloadShown)
	c.PageSize = cmp.Or(c.PageSize, DefaultPageSize)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.BasePath != "" && (!strings.HasPrefix(c.BasePath, "/") || strings.HasSuffix(c.BasePath, "/")):
		return fmt.Errorf("%w: outboxui: BasePath %q must start with / and not end with /", outboxdriver.ErrInvalidConfig, c.BasePath)
	case strings.ContainsAny(c.BasePath, "\"'<>?# \t\r\n"):
		return fmt.Errorf("%w: outboxui: BasePath %q contains a character not allowed in a path", outboxdriver.ErrInvalidConfig, c.BasePath)
	case c.RefreshInterval < 0, c.ActivityInterval < 0, c.MaxPayloadShown < 0:
		return fmt.Errorf("%w: outboxui: RefreshInterval, ActivityInterval and MaxPayloadShown must not be negative", outboxdriver.ErrInvalidConfig)
	case c.PageSize < 0 || c.PageSize > 1000:
		return fmt.Errorf("%w: outboxui: PageSize %d out of range 1..1000", outboxdriver.ErrInvalidConfig, c.PageSize)
	}
	return nil
}

// source is the part of *outbox.Outbox the console uses; unit tests of the
// pure logic substitute a fake.
type source interface {
	Stats(ctx context.Context) (*outbox.Stats, error)
	List(ctx context.Context, f outbox.ListFilter) (*outbox.ListPage, error)
	Get(ctx context.Context, id string) (*outbox.StoredEvent, error)
	Retry(ctx context.Context, ids ...string) (int64, error)
	RetryDeadMatching(ctx context.Context, f outbox.ListFilter) (int64, error)
	Purge(ctx context.Context, olderThan time.Duration, opts outbox.PurgeOptions) (int64, error)
	Activity(ctx context.Context, since time.Time, limit int) ([]outboxdriver.ActivityRow, error)
	DeadGroups(ctx context.Context, limit int) (*outbox.DeadGroups, error)
}

//go:embed assets
var assetsFS embed.FS

// Handler is the console. Close it to stop its poller.
type Handler struct {
	src    source
	cfg    Config
	origin string // "postgres table \"outbox\"": never a DSN
	tmpl   *template.Template
	mux    *http.ServeMux
	root   http.Handler
	poll   *poller

	closeOnce sync.Once
	cancel    context.CancelFunc
}

// New returns the console for ob.
func New(ob *outbox.Outbox, cfg Config) (*Handler, error) {
	if ob == nil {
		return nil, fmt.Errorf("%w: outboxui: outbox must not be nil", outboxdriver.ErrInvalidConfig)
	}
	d := ob.Driver()
	return newHandler(ob, d.Name()+" table "+d.Table(), cfg, nil)
}

// newHandler builds the handler on src; tick, when not nil, replaces the
// poller's ticker (tests).
func newHandler(src source, origin string, cfg Config, tick <-chan time.Time) (*Handler, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	h := &Handler{src: src, cfg: cfg, origin: origin}
	tmpl, err := template.New("").Funcs(h.funcs()).ParseFS(assetsFS, "assets/*.html")
	if err != nil {
		return nil, fmt.Errorf("outboxui: templates: %w", err)
	}
	h.tmpl = tmpl
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.poll = newPoller(h, tick)
	go h.poll.run(ctx)
	h.routes()
	return h, nil
}

// Close stops the shared poller and ends the live streams. The handler
// still serves pages afterwards, without live refresh.
func (h *Handler) Close() error {
	h.closeOnce.Do(func() {
		h.cancel()
		h.poll.closeAll()
	})
	return nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "+
		"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-store")
	h.root.ServeHTTP(w, r)
}

func (h *Handler) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", h.overview)
	m.HandleFunc("GET /events", h.events)
	m.HandleFunc("GET /events/{id}", h.event)
	m.HandleFunc("GET /dead", h.dead)
	m.HandleFunc("GET /purge", h.purgeForm)
	m.HandleFunc("GET /confirm", h.confirm)
	m.HandleFunc("GET /live", h.live)
	m.HandleFunc("POST /actions/retry", h.action(h.retry))
	m.HandleFunc("POST /actions/retry-dead", h.action(h.retryDead))
	m.HandleFunc("POST /actions/purge", h.action(h.purge))
	static, _ := fs.Sub(assetsFS, "assets")
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(onlyStatic{static})))
	h.mux = m
	h.root = http.NewCrossOriginProtection().Handler(m)
}

// onlyStatic serves the .css and .js assets, not the templates.
type onlyStatic struct{ fs.FS }

func (o onlyStatic) Open(name string) (fs.File, error) {
	if !strings.HasSuffix(name, ".css") && !strings.HasSuffix(name, ".js") {
		return nil, fs.ErrNotExist
	}
	return o.FS.Open(name)
}

// errNotAllowed is shown when an action is requested in read-only mode.
var errNotAllowed = errors.New("read-only console: actions are disabled (start `outbox ui` with --allow-actions, or set Config.AllowActions)")

// outboxGroup is one dead group as the outbox returns it.
type outboxGroup = outboxdriver.DeadGroup
