package outboxui

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/outboxkit/outboxkit/framework/outbox"
)

const csrfCookie = "outboxui_csrf"

// pageData is what every template receives.
type pageData struct {
	Base         string
	Origin       string
	Nav          string
	AllowActions bool
	CSRF         string
	RefreshMS    int64
	Data         any
}

func (h *Handler) page(nav string, data any) pageData {
	return pageData{Base: h.cfg.BasePath, Origin: line(h.origin), Nav: nav, AllowActions: h.cfg.AllowActions,
		RefreshMS: h.cfg.RefreshInterval.Milliseconds(), Data: data}
}

func (h *Handler) funcs() template.FuncMap {
	return template.FuncMap{
		"age":  fmtAge,
		"time": fmtTime,
		"hash": errorHash,
		"line": line,
		"sub":  func(a, b int) int { return a - b },
		"half": func(a int) int { return a / 2 },
	}
}

// csrfToken returns the browser's CSRF token, setting the cookie first if
// it has none (double-submit: the form repeats the cookie's value, which a
// cross-site page can neither read nor set).
func (h *Handler) csrfToken(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) == 32 {
		return c.Value
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	tok := hex.EncodeToString(b[:])
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: tok, Path: h.cfg.BasePath + "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	return tok
}

func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name, nav string, data any) {
	pd := h.page(nav, data)
	if h.cfg.AllowActions {
		pd.CSRF = h.csrfToken(w, r)
	}
	var buf bytes.Buffer
	if err := h.tmpl.ExecuteTemplate(&buf, name, pd); err != nil {
		h.cfg.Logger.Error("outboxui: render", "template", name, "error", err)
		http.Error(w, "outboxui: cannot render page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// message renders a page with one message (errors, action results).
type message struct {
	Title, Text string
	Back, Label string
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, status int, title string, err error) {
	h.render(w, r, status, "message", "", message{Title: title, Text: h.errText(err), Back: h.cfg.BasePath + "/", Label: "overview"})
}

var userinfoRe = regexp.MustCompile(`(://[^:/@\s]*:)[^@\s]*@`)

// errText shows an error without any password a URL in it may carry.
func (h *Handler) errText(err error) string {
	return line(userinfoRe.ReplaceAllString(err.Error(), "${1}xxxxx@"))
}

type overviewData struct {
	Snap      *snapshot
	Oldest    string
	Groups    []groupView
	GroupsErr string
}

func (h *Handler) overview(w http.ResponseWriter, r *http.Request) {
	s := h.poll.current(r.Context(), h.cfg.RefreshInterval)
	d := overviewData{Snap: s}
	if s.Stats != nil {
		d.Oldest = fmtAge(s.Stats.OldestPendingAge)
	}
	groups, err := h.src.DeadGroups(r.Context(), 5)
	if err != nil {
		d.GroupsErr = h.errText(err)
	} else {
		d.Groups = groupViews(groups.Groups)
	}
	h.render(w, r, http.StatusOK, "overview", "overview", d)
}

// groupView is one dead group, cleaned.
type groupView struct {
	Hash, Error, Short, Oldest, Newest string
	Count, Types                       int64
}

func groupViews(gs []outboxGroup) []groupView {
	out := make([]groupView, len(gs))
	for i, g := range gs {
		e := clean(g.LastError, true)
		out[i] = groupView{Hash: errorHash(g.LastError), Error: e, Short: shorten(line(g.LastError), 160),
			Oldest: fmtTime(g.Oldest), Newest: fmtTime(g.Newest), Count: g.Count, Types: g.Types}
	}
	return out
}

// findGroup resolves a group hash to its last error text.
func (h *Handler) findGroup(ctx context.Context, hash string) (*outboxGroup, error) {
	groups, err := h.src.DeadGroups(ctx, 1000)
	if err != nil {
		return nil, err
	}
	for _, g := range groups.Groups {
		if errorHash(g.LastError) == hash {
			return &g, nil
		}
	}
	return nil, errors.New("no dead events with this last error any more (retried or purged meanwhile?)")
}

type eventsData struct {
	Filter    map[string]string
	Statuses  []string
	AckStates []string
	Events    []eventRow
	Next      string
	Err       string
	Group     string
}

// parseWhen reads a time filter: RFC 3339, a datetime-local value
// (2006-01-02T15:04, UTC), or an age such as 90m or 2h (that long ago).
func parseWhen(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is neither a time (2006-01-02T15:04, RFC 3339) nor an age (90m, 2h)", shorten(line(s), 40))
}

func (h *Handler) events(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := eventsData{Filter: map[string]string{}, Statuses: []string{"", "pending", "delivered", "dead"},
		AckStates: []string{"", "awaiting", "acknowledged", "rejected", "unacknowledged"}}
	for _, k := range []string{"status", "ack", "type", "topic", "key", "since", "until", "error"} {
		d.Filter[k] = q.Get(k)
	}
	f := outbox.ListFilter{Status: outbox.Status(q.Get("status")), Type: q.Get("type"), Topic: q.Get("topic"),
		Key: q.Get("key"), Ack: outbox.AckStatus(q.Get("ack")), Limit: h.cfg.PageSize}
	var err error
	now := time.Now()
	if f.Since, err = parseWhen(q.Get("since"), now); err == nil {
		f.Until, err = parseWhen(q.Get("until"), now)
	}
	if err == nil && q.Get("after") != "" {
		f.After, err = strconv.ParseInt(q.Get("after"), 10, 64)
		if err != nil || f.After < 0 {
			err = errors.New("after: want the cursor of a next-page link")
		}
	}
	if err == nil && f.Status != "" && !f.Status.Valid() {
		err = fmt.Errorf("status %q: want pending, delivered or dead", shorten(line(string(f.Status)), 20))
	}
	if err == nil && f.Ack != "" && !f.Ack.Valid() {
		err = fmt.Errorf("ack %q: want awaiting, acknowledged, rejected or unacknowledged", shorten(line(string(f.Ack)), 20))
	}
	if err == nil && q.Get("error") != "" {
		var g *outboxGroup
		if g, err = h.findGroup(r.Context(), q.Get("error")); err == nil {
			f.LastError, f.Status = g.LastError, outbox.StatusDead
			d.Group = shorten(line(g.LastError), 160)
		}
	}
	if err != nil {
		d.Err = h.errText(err)
		h.render(w, r, http.StatusBadRequest, "events", "events", d)
		return
	}
	page, err := h.src.List(r.Context(), f)
	if err != nil {
		d.Err = h.errText(err)
		h.render(w, r, http.StatusInternalServerError, "events", "events", d)
		return
	}
	for _, e := range page.Events {
		d.Events = append(d.Events, toRow(e))
	}
	if page.Next != 0 {
		nq := url.Values{}
		for k, v := range d.Filter {
			if v != "" {
				nq.Set(k, v)
			}
		}
		nq.Set("after", strconv.FormatInt(page.Next, 10))
		d.Next = "?" + nq.Encode()
	}
	h.render(w, r, http.StatusOK, "events", "events", d)
}

func (h *Handler) event(w http.ResponseWriter, r *http.Request) {
	e, err := h.src.Get(r.Context(), r.PathValue("id"))
	if errors.Is(err, outbox.ErrNotFound) {
		h.fail(w, r, http.StatusNotFound, "Event not found", err)
		return
	}
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, "Cannot read the event", err)
		return
	}
	h.render(w, r, http.StatusOK, "event", "events", toDetail(e, h.cfg.MaxPayloadShown))
}

type deadData struct {
	Groups  []groupView
	Partial bool
}

func (h *Handler) dead(w http.ResponseWriter, r *http.Request) {
	groups, err := h.src.DeadGroups(r.Context(), 200)
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, "Cannot group the dead events", err)
		return
	}
	h.render(w, r, http.StatusOK, "dead", "dead", deadData{Groups: groupViews(groups.Groups), Partial: groups.Partial})
}

func (h *Handler) purgeForm(w http.ResponseWriter, r *http.Request) {
	h.render(w, r, http.StatusOK, "purge", "purge", nil)
}

// live streams snapshots as server-sent events.
func (h *Handler) live(w http.ResponseWriter, r *http.Request) {
	c := h.poll.subscribe()
	if c == nil {
		http.Error(w, "outboxui: closed", http.StatusServiceUnavailable)
		return
	}
	defer h.poll.unsubscribe(c)
	w.Header().Set("Content-Type", "text/event-stream")
	rc := http.NewResponseController(w)
	send := func(msg []byte) bool {
		if _, err := fmt.Fprintf(w, "data: %s\n\n", msg); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send(h.poll.message(h.poll.current(r.Context(), h.cfg.RefreshInterval))) {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case msg, ok := <-c:
			if !ok || !send(msg) {
				return
			}
		}
	}
}

// confirmData is the confirmation page of an action.
type confirmData struct {
	Action, Title, Text, Detail string
	Count                       int64
	HasCount                    bool
	Fields                      map[string]string
}

func (h *Handler) confirm(w http.ResponseWriter, r *http.Request) {
	if !h.cfg.AllowActions {
		h.fail(w, r, http.StatusForbidden, "Read-only", errNotAllowed)
		return
	}
	q := r.URL.Query()
	switch q.Get("action") {
	case "retry":
		e, err := h.src.Get(r.Context(), q.Get("id"))
		if err != nil {
			h.fail(w, r, http.StatusNotFound, "Event not found", err)
			return
		}
		h.render(w, r, http.StatusOK, "confirm", "", confirmData{Action: "retry", Title: "Retry this event?",
			Text:   fmt.Sprintf("The event becomes pending again with a fresh attempt budget; the relay publishes it (status now: %s).", e.Status),
			Detail: line(e.Type) + " · " + line(e.Topic) + " · key " + line(e.Key), Count: 1, HasCount: true,
			Fields: map[string]string{"id": e.ID}})
	case "retry-dead":
		g, err := h.findGroup(r.Context(), q.Get("group"))
		if err != nil {
			h.fail(w, r, http.StatusNotFound, "Group not found", err)
			return
		}
		if g.LastError == "" {
			h.fail(w, r, http.StatusBadRequest, "Cannot retry this group", errors.New("dead events without a last error cannot be selected as a group; retry them one by one"))
			return
		}
		h.render(w, r, http.StatusOK, "confirm", "", confirmData{Action: "retry-dead", Title: "Retry these dead events?",
			Text:   "Dry run: this many dead events have this last error and would become pending again:",
			Detail: shorten(clean(g.LastError, true), 2000), Count: g.Count, HasCount: true,
			Fields: map[string]string{"group": errorHash(g.LastError)}})
	case "purge":
		older, err := parseAge(q.Get("older"))
		if err != nil {
			h.fail(w, r, http.StatusBadRequest, "Bad age", err)
			return
		}
		h.render(w, r, http.StatusOK, "confirm", "", confirmData{Action: "purge", Title: "Purge delivered events?",
			Text:   "Delivered events older than this are deleted, in batches. Pending and dead events are never purged.",
			Detail: "delivered before " + fmtTime(time.Now().Add(-older)),
			Fields: map[string]string{"older": older.String()}})
	default:
		h.fail(w, r, http.StatusBadRequest, "Unknown action", errors.New("action: want retry, retry-dead or purge"))
	}
}

var dayRe = regexp.MustCompile(`^(\d{1,5})d$`)

// parseAge reads 7d, 36h or 90m.
func parseAge(s string) (time.Duration, error) {
	if m := dayRe.FindStringSubmatch(s); m != nil {
		n, _ := strconv.Atoi(m[1])
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not an age (examples: 7d, 36h, 90m)", shorten(line(s), 40))
	}
	return d, nil
}

// action guards a POST: actions allowed, the CSRF token matches the cookie,
// and the confirmation was given.
func (h *Handler) action(fn func(w http.ResponseWriter, r *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !h.cfg.AllowActions {
			h.fail(w, r, http.StatusForbidden, "Read-only", errNotAllowed)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			h.fail(w, r, http.StatusBadRequest, "Bad form", err)
			return
		}
		c, err := r.Cookie(csrfCookie)
		form := r.PostForm.Get("csrf")
		if err != nil || len(c.Value) != 32 || subtle.ConstantTimeCompare([]byte(c.Value), []byte(form)) != 1 {
			h.fail(w, r, http.StatusForbidden, "Refused", errors.New("missing or wrong CSRF token: reload the page and try again"))
			return
		}
		if r.PostForm.Get("confirm") != "yes" {
			h.fail(w, r, http.StatusBadRequest, "Refused", errors.New("not confirmed: actions need the confirmation page"))
			return
		}
		fn(w, r)
	}
}

func (h *Handler) done(w http.ResponseWriter, r *http.Request, title, text, back, label string) {
	h.render(w, r, http.StatusOK, "message", "", message{Title: title, Text: text, Back: back, Label: label})
}

func (h *Handler) retry(w http.ResponseWriter, r *http.Request) {
	id := r.PostForm.Get("id")
	n, err := h.src.Retry(r.Context(), id)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, "Retry failed", err)
		return
	}
	h.poll.invalidate()
	h.done(w, r, "Retried", fmt.Sprintf("%d event made pending again.", n), h.cfg.BasePath+"/events/"+url.PathEscape(id), "the event")
}

func (h *Handler) retryDead(w http.ResponseWriter, r *http.Request) {
	g, err := h.findGroup(r.Context(), r.PostForm.Get("group"))
	if err == nil && g.LastError == "" {
		err = errors.New("dead events without a last error cannot be selected as a group")
	}
	if err != nil {
		h.fail(w, r, http.StatusNotFound, "Group not found", err)
		return
	}
	n, err := h.src.RetryDeadMatching(r.Context(), outbox.ListFilter{LastError: g.LastError})
	h.poll.invalidate()
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, fmt.Sprintf("Retry stopped after %d events", n), err)
		return
	}
	h.done(w, r, "Retried", fmt.Sprintf("%d dead events made pending again.", n), h.cfg.BasePath+"/dead", "dead events")
}

func (h *Handler) purge(w http.ResponseWriter, r *http.Request) {
	older, err := parseAge(r.PostForm.Get("older"))
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, "Bad age", err)
		return
	}
	n, err := h.src.Purge(r.Context(), older, outbox.PurgeOptions{})
	h.poll.invalidate()
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, fmt.Sprintf("Purge stopped after %d events", n), err)
		return
	}
	h.done(w, r, "Purged", fmt.Sprintf("%d delivered events deleted.", n), h.cfg.BasePath+"/", "overview")
}
