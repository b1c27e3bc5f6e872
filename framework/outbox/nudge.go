package outbox

import (
	"sync"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// nudges connects the Outboxes and Relays of one process: after Insert
// wrote events, the relays of the same table poll at MinPollInterval again
// (as while events flow) instead of waiting out an idle PollInterval. The
// events are not committed yet when Insert returns, so a nudge only speeds
// the polls up; across processes, polling and driver notifications
// (outboxdriver.Notifier) still apply.
var nudges = &nudgeHub{subs: map[string]map[chan struct{}]struct{}{}}

type nudgeHub struct {
	mu   sync.RWMutex
	subs map[string]map[chan struct{}]struct{} // table key -> subscribers
}

// nudgeKey names drv's table among the process's drivers: its quoted
// table name (Insert calls no other Driver method than EventInsert and
// Table). Two databases with a table of the same name share the key; their
// relays then poll a little more, nothing else.
func nudgeKey(drv outboxdriver.Driver) string { return drv.Table() }

// subscribe returns a channel that receives a value (coalesced) after an
// Insert into the table of key, and a func that ends the subscription.
func (h *nudgeHub) subscribe(key string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	if h.subs[key] == nil {
		h.subs[key] = map[chan struct{}]struct{}{}
	}
	h.subs[key][ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs[key], ch)
		if len(h.subs[key]) == 0 {
			delete(h.subs, key)
		}
		h.mu.Unlock()
	}
}

// nudge wakes the subscribers of key without ever blocking.
func (h *nudgeHub) nudge(key string) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for ch := range h.subs[key] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
