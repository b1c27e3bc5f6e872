// Package memory is an in-process broker for unit tests and demos, built on
// Watermill's gochannel Pub/Sub in persistent mode.
//
// What it promises: a Publish is stored in the process's memory before it
// returns, and every subscriber of a topic, including one that subscribes
// later, receives every message of that topic (fan-out, with the history
// replayed); a nacked message is sent to that subscriber again.
//
// What it does NOT promise, and production brokers do:
//   - durability: everything is gone when the process exits;
//   - order: gochannel hands each message to a subscriber in its own
//     goroutine, so even one key's messages may arrive out of order;
//   - deduplication: publishing the same event id twice delivers it twice;
//   - consumer groups: two subscribers of a topic each get every message;
//   - bounded memory: every message ever published stays in memory.
//
// Importing the package registers the "memory" URL scheme with
// framework/outboxbroker: memory://NAME opens the process-wide broker
// called NAME (shared by every Open with that name until all are closed).
package memory

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"sync"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/outboxkit/outboxkit/framework/outboxbroker"
)

// Features is what the memory broker promises (see the package doc).
var Features = outboxbroker.Features{
	NativeDedup: false,
	DedupSlot:   "Watermill message UUID (in process)",
	PerKeyOrder: false,
	OrderScope:  "none: each message is delivered from its own goroutine",
	Subscriber:  true,
	Durable:     false,
}

// Config configures a memory broker. The zero value is ready to use.
type Config struct {
	// BlockPublishUntilAck makes Publish wait until every current subscriber
	// of the topic acknowledged the message (no subscriber: no wait). Zero
	// (false) means Publish returns once the message is stored.
	BlockPublishUntilAck bool

	// OutputBuffer is each subscription's channel buffer. Zero means 0
	// (unbuffered).
	OutputBuffer int

	// Logger receives gochannel's logs. Nil discards them.
	Logger *slog.Logger
}

// PubSubConfig returns the gochannel configuration New uses.
func (c Config) PubSubConfig() gochannel.Config {
	return gochannel.Config{
		OutputChannelBuffer:            int64(c.OutputBuffer),
		Persistent:                     true,
		BlockPublishUntilSubscriberAck: c.BlockPublishUntilAck,
	}
}

// New returns a new, empty in-memory broker; it is both the
// message.Publisher and the message.Subscriber. Close it to stop its
// subscriptions.
func New(cfg Config) (*gochannel.GoChannel, error) {
	if cfg.OutputBuffer < 0 {
		return nil, fmt.Errorf("memory: invalid config: OutputBuffer %d must not be negative", cfg.OutputBuffer)
	}
	logger := cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	return gochannel.NewGoChannel(cfg.PubSubConfig(), watermill.NewSlogLogger(logger)), nil
}

var (
	namedMu sync.Mutex
	named   = map[string]*shared{}
)

type shared struct {
	ps   *gochannel.GoChannel
	refs int
}

func init() { outboxbroker.Register("memory", open) }

// open serves memory://NAME?block_until_ack=BOOL&buffer=N. Opens with the
// same NAME share one broker (the first Open's settings win); it is closed
// when the last of them is closed.
func open(_ context.Context, u *url.URL, opts outboxbroker.Options) (*outboxbroker.Broker, error) {
	p := outboxbroker.NewParams(u)
	cfg := Config{
		BlockPublishUntilAck: p.Bool("block_until_ack", false),
		OutputBuffer:         p.Int("buffer", 0, 0, 1<<20),
		Logger:               opts.Logger,
	}
	if err := p.Err(); err != nil {
		return nil, err
	}
	name := u.Host + u.Path
	if u.Opaque != "" {
		name = u.Opaque
	}
	namedMu.Lock()
	defer namedMu.Unlock()
	s, ok := named[name]
	if !ok {
		ps, err := New(cfg)
		if err != nil {
			return nil, err
		}
		s = &shared{ps: ps}
		named[name] = s
	}
	s.refs++
	var once sync.Once
	return &outboxbroker.Broker{
		Publisher:  s.ps,
		Subscriber: s.ps,
		Features:   Features,
		CloseFunc: func() error {
			var err error
			once.Do(func() {
				namedMu.Lock()
				defer namedMu.Unlock()
				s.refs--
				if s.refs == 0 {
					delete(named, name)
					err = s.ps.Close()
				}
			})
			return err
		},
	}, nil
}
