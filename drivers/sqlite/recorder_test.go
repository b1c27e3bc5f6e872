package sqlite_test

import (
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
)

// recorder is a Watermill publisher that records what it receives and can
// be told to fail or hang, standing in for a broker in driver tests (the
// conformance suite runs the same scenarios against real brokers).
type recorder struct {
	mu     sync.Mutex
	msgs   []*message.Message
	byID   map[string]int
	failFn func(*message.Message) error
	hang   chan struct{} // when non-nil, Publish blocks until it is closed
}

func newRecorder() *recorder { return &recorder{byID: map[string]int{}} }

func (r *recorder) Publish(topic string, msgs ...*message.Message) error {
	r.mu.Lock()
	hang, fail := r.hang, r.failFn
	r.mu.Unlock()
	if hang != nil {
		<-hang
	}
	for _, m := range msgs {
		if fail != nil {
			if err := fail(m); err != nil {
				return err
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range msgs {
		r.msgs = append(r.msgs, m)
		r.byID[m.UUID]++
	}
	return nil
}

func (r *recorder) Close() error { return nil }

func (r *recorder) count() (total, distinct int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs), len(r.byID)
}

func (r *recorder) snapshot() []*message.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*message.Message(nil), r.msgs...)
}

// runRelay runs a relay until the test ends.
