package main

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/outboxkit/outboxkit/framework/outboxui"
)

// uiFlags are the flags of `outbox ui`.
type uiFlags struct {
	listen       string
	allowActions bool
	authToken    string
	basicAuth    string
	refresh      time.Duration
}

func (a *app) uiCommand() *cobra.Command {
	var f uiFlags
	cmd := &cobra.Command{
		Use:   "ui",
		Short: "Serve the web console (read-only unless --allow-actions)",
		Long: `ui serves the outbox web console: counts by status, the last hour's deliveries and
lag per topic and type, the event list with filters, event details, dead events
grouped by last error, and (with --allow-actions) retry and purge behind a CSRF
token and a confirmation page.

Listening beyond loopback requires authentication: --auth-token (env
OUTBOX_UI_TOKEN; browsers open http://host:port/?token=... once, or send
"Authorization: Bearer ...") or --basic-auth user:password (env
OUTBOX_UI_BASIC_AUTH). Prefer the environment variables: flags show in ps.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runUI(cmd.Context(), f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", "127.0.0.1:8080", "address to listen on")
	fl.BoolVar(&f.allowActions, "allow-actions", false, "enable retry and purge (default: read-only)")
	fl.StringVar(&f.authToken, "auth-token", "", "require this bearer token (env OUTBOX_UI_TOKEN)")
	fl.StringVar(&f.basicAuth, "basic-auth", "", "require HTTP basic auth, user:password (env OUTBOX_UI_BASIC_AUTH)")
	fl.DurationVar(&f.refresh, "refresh", outboxui.DefaultRefreshInterval, "live refresh interval (one stats query per interval)")
	return cmd
}

// loopback reports whether the listen address only accepts local
// connections.
func loopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (a *app) runUI(ctx context.Context, f uiFlags) error {
	f.authToken = cmp.Or(f.authToken, os.Getenv("OUTBOX_UI_TOKEN"))
	f.basicAuth = cmp.Or(f.basicAuth, os.Getenv("OUTBOX_UI_BASIC_AUTH"))
	if f.authToken != "" && f.basicAuth != "" {
		return usageError("ui: give either --auth-token or --basic-auth, not both")
	}
	if f.basicAuth != "" && !strings.Contains(f.basicAuth, ":") {
		return usageError("ui: --basic-auth wants user:password")
	}
	if f.authToken == "" && f.basicAuth == "" && !loopback(f.listen) {
		return usageError("ui: --listen %s accepts connections beyond loopback: set --auth-token (env OUTBOX_UI_TOKEN) "+
			"or --basic-auth (env OUTBOX_UI_BASIC_AUTH), or listen on 127.0.0.1", f.listen)
	}
	if f.refresh <= 0 {
		return usageError("ui: --refresh %s must be positive", f.refresh)
	}
	_, ob, closeDB, err := a.openOutbox(ctx)
	if err != nil {
		return err
	}
	defer closeDB()
	ui, err := outboxui.New(ob, outboxui.Config{AllowActions: f.allowActions, RefreshInterval: f.refresh})
	if err != nil {
		return &codedError{exitUsage, err}
	}
	defer ui.Close()
	var h http.Handler = ui
	switch {
	case f.authToken != "":
		h = tokenAuth(f.authToken, h)
	case f.basicAuth != "":
		user, pass, _ := strings.Cut(f.basicAuth, ":")
		h = basicAuth(user, pass, h)
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return usageError("ui: --listen %s: %v", f.listen, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	mode := "read-only"
	if f.allowActions {
		mode = "actions allowed"
	}
	fmt.Fprintf(a.stdout, "outbox ui: serving http://%s/ (%s)\n", ln.Addr(), mode)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("ui: %w", err)
	case <-ctx.Done():
	}
	ui.Close() // ends the live streams, so that Shutdown does not wait for them
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("ui: shutdown: %w", err)
	}
	return nil
}

const uiTokenCookie = "outbox_ui_token"

// same compares secrets in constant time (hashing first, so that lengths
// do not leak either).
func same(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

// tokenAuth admits requests carrying the token as a bearer header or in the
// cookie that visiting any page with ?token=... sets.
func tokenAuth(token string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && same(bearer, token) {
			next.ServeHTTP(w, r)
			return
		}
		if c, err := r.Cookie(uiTokenCookie); err == nil && same(c.Value, token) {
			next.ServeHTTP(w, r)
			return
		}
		if q := r.URL.Query(); q.Has("token") && r.Method == http.MethodGet && same(q.Get("token"), token) {
			http.SetCookie(w, &http.Cookie{Name: uiTokenCookie, Value: token, Path: "/", HttpOnly: true,
				SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
			q.Del("token")
			u := *r.URL
			u.RawQuery = q.Encode()
			http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="outbox"`)
		http.Error(w, "outbox ui: authentication required (open the console with ?token=... or send Authorization: Bearer ...)", http.StatusUnauthorized)
	})
}

// basicAuth admits requests with the given HTTP basic credentials.
func basicAuth(user, pass string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		userOK, passOK := same(u, user), same(p, pass) // both compared: no early exit to time
		if ok && userOK && passOK {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="outbox", charset="UTF-8"`)
		http.Error(w, "outbox ui: authentication required", http.StatusUnauthorized)
	})
}
