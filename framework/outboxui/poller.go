package outboxui

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/outboxkit/outboxkit/framework/outbox"
)

// snapshot is what the overview shows; one is shared by every browser.
type snapshot struct {
	Seq    int64 // increases with each stats query
	At     time.Time
	Stats  *outbox.Stats
	Err    string
	Charts charts
}

// liveMsg is the JSON a live stream sends; Charts is HTML rendered by
// html/template from escaped values.
type liveMsg struct {
	Seq                 int64  `json:"seq"`
	At                  string `json:"at"`
	Pending             int64  `json:"pending"`
	Dead                int64  `json:"dead"`
	OldestPending       string `json:"oldestPending"`
	DeliveredLastMinute int64  `json:"deliveredLastMinute"`
	Err                 string `json:"error"`
	Charts              string `json:"charts"`
}

// poller reads the stats at most once per RefreshInterval and the activity
// at most once per ActivityInterval, whoever asks (page loads or the ticker
// feeding the live streams), and fans each new snapshot out to every
// stream. It only queries on ticks while at least one stream is open.
type poller struct {
	h    *Handler
	tick <-chan time.Time

	refreshMu  sync.Mutex // one refresh at a time; others reuse its result
	snap       *snapshot
	activityAt time.Time
	lastCharts charts
	seq        int64

	subMu sync.Mutex
	subs  map[chan []byte]struct{}
	done  bool
}

func newPoller(h *Handler, tick <-chan time.Time) *poller {
	return &poller{h: h, tick: tick, subs: map[chan []byte]struct{}{}}
}

func (p *poller) run(ctx context.Context) {
	tick := p.tick
	if tick == nil {
		t := time.NewTicker(p.h.cfg.RefreshInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
		if p.watchers() == 0 {
			continue
		}
		s := p.current(ctx, 0)
		p.broadcast(p.message(s))
	}
}

// current returns a snapshot at most maxAge old (0: always a new one),
// querying the stats (and, when due, the activity) if needed.
func (p *poller) current(ctx context.Context, maxAge time.Duration) *snapshot {
	p.refreshMu.Lock()
	defer p.refreshMu.Unlock()
	now := time.Now()
	if p.snap != nil && maxAge > 0 && now.Sub(p.snap.At) < maxAge {
		return p.snap
	}
	p.seq++
	s := &snapshot{Seq: p.seq, At: now}
	// Not the caller's cancellation: the snapshot is shared, and one closed
	// browser tab must not leave "context canceled" for everyone else.
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	st, err := p.h.src.Stats(qctx)
	if err != nil {
		s.Err = p.h.errText(err)
	}
	s.Stats = st
	if p.activityAt.IsZero() || now.Sub(p.activityAt) >= p.h.cfg.ActivityInterval {
		p.activityAt = now
		rows, err := p.h.src.Activity(qctx, now.Add(-time.Hour).Truncate(time.Minute), 0)
		p.lastCharts = buildCharts(rows, now)
		switch {
		case errors.Is(err, outbox.ErrNotSupported):
			p.lastCharts.Err = "not reported by this driver (it has no activity query)"
		case err != nil:
			p.lastCharts.Err = p.h.errText(err)
		}
	}
	s.Charts = p.lastCharts
	p.snap = s
	return s
}

func (p *poller) message(s *snapshot) []byte {
	m := liveMsg{Seq: s.Seq, At: fmtTime(s.At), Err: s.Err}
	if s.Stats != nil {
		m.Pending, m.Dead, m.DeliveredLastMinute = s.Stats.Pending, s.Stats.Dead, s.Stats.DeliveredLastMinute
		m.OldestPending = fmtAge(s.Stats.OldestPendingAge)
	}
	var buf bytes.Buffer
	if err := p.h.tmpl.ExecuteTemplate(&buf, "charts", s.Charts); err == nil {
		m.Charts = buf.String()
	}
	b, _ := json.Marshal(m)
	return b
}

func (p *poller) watchers() int {
	p.subMu.Lock()
	defer p.subMu.Unlock()
	return len(p.subs)
}

// subscribe registers a stream; the channel holds the latest message only.
// It returns nil once the handler is closed.
func (p *poller) subscribe() chan []byte {
	p.subMu.Lock()
	defer p.subMu.Unlock()
	if p.done {
		return nil
	}
	c := make(chan []byte, 1)
	p.subs[c] = struct{}{}
	return c
}

func (p *poller) unsubscribe(c chan []byte) {
	p.subMu.Lock()
	defer p.subMu.Unlock()
	if _, ok := p.subs[c]; ok {
		delete(p.subs, c)
		close(c)
	}
}

// broadcast gives msg to every stream, replacing an unsent older message
// so that a slow browser never holds the poller back.
func (p *poller) broadcast(msg []byte) {
	p.subMu.Lock()
	defer p.subMu.Unlock()
	for c := range p.subs {
		select {
		case <-c:
		default:
		}
		c <- msg
	}
}

func (p *poller) closeAll() {
	p.subMu.Lock()
	defer p.subMu.Unlock()
	p.done = true
	for c := range p.subs {
		delete(p.subs, c)
		close(c)
	}
}

// invalidate makes the next page load read fresh stats (after an action).
func (p *poller) invalidate() {
	p.refreshMu.Lock()
	defer p.refreshMu.Unlock()
	p.snap = nil
}
