// Package outboxbroker is a small registry of broker modules, in the spirit
// of database/sql drivers: each broker module (brokers/nats, brokers/kafka,
// brokers/amqp, brokers/redisstream, brokers/memory) registers the URL
// schemes it serves from an init function, and a program picks a broker by
// URL without importing the module's API:
//
//	import _ "github.com/outboxkit/outboxkit/brokers/nats"
//
//	b, err := outboxbroker.Open(ctx, "nats://127.0.0.1:4222?stream=ORDERS", outboxbroker.Options{})
//	if err != nil { ... }
//	defer b.Close()
//	relay, _ := outbox.NewRelay(drv, b.Publisher, outbox.RelayConfig{})
//
// Broker URLs often carry secrets (passwords, tokens); log them only through
// Redact. Every error this package and the registered openers return names
// the offending URL parameter and never contains a secret.
package outboxbroker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Features describes what a broker promises, for the conformance harness and
// for operators choosing a broker. A false field means "not promised", not
// "never happens".
type Features struct {
	// NativeDedup is true when the broker itself drops a second publish that
	// carries an event id it has already stored (NATS JetStream's
	// Nats-Msg-Id within the stream's duplicate window). Brokers without it
	// still carry the id (DedupSlot) so consumers can deduplicate, e.g. with
	// package inbox.
	NativeDedup bool

	// DedupSlot names where the event id travels in the broker's own message
	// model (e.g. "Nats-Msg-Id header", "AMQP message-id property").
	DedupSlot string

	// PerKeyOrder is true when messages published in order with the same
	// event key (metadata outbox_key) are delivered to a consumer in that
	// order, provided the consumer processes one message at a time.
	PerKeyOrder bool

	// OrderScope says, in words, how far PerKeyOrder reaches (e.g. "per
	// partition; the key picks the partition").
	OrderScope string

	// Subscriber is true when Broker.Subscriber is non-nil.
	Subscriber bool

	// Durable is true when an acknowledged publish survives a broker restart
	// (given the broker's own storage settings).
	Durable bool
}

// Options are the settings an Opener takes besides the URL. The zero value is
// ready to use.
type Options struct {
	// Logger receives the broker client's logs. Nil discards them.
	Logger *slog.Logger

	// Addr, when set, is the host:port to dial instead of the URL's host. It
	// lets a test route the broker connection through a loopback TCP proxy
	// (broker-cut fault tests) while keeping every other URL setting.
	Addr string

	// ConsumerGroup names the durable consumer (NATS durable, Kafka consumer
	// group, AMQP queue suffix, Redis consumer group) subscribers join. Zero
	// means the broker module's default, which its README gives. A URL
	// parameter "group" overrides it.
	ConsumerGroup string
}

// Broker is an opened broker: a Watermill Publisher for the relay, a
// Subscriber for consumers (nil when the broker has none), the broker's
// Features, and Close, which closes both and any shared connection.
type Broker struct {
	// Publisher publishes with the broker module's durable defaults.
	Publisher message.Publisher
	// Subscriber consumes with durable consumer defaults; nil when
	// Features.Subscriber is false.
	Subscriber message.Subscriber
	// Features describes what this broker promises.
	Features Features
	// CloseFunc releases the publisher, the subscriber and their
	// connections. Call Close rather than CloseFunc directly.
	CloseFunc func() error
}

// Close closes the broker's publisher, subscriber and connections. It is
// safe to call on a Broker whose CloseFunc is nil.
func (b *Broker) Close() error {
	if b == nil || b.CloseFunc == nil {
		return nil
	}
	return b.CloseFunc()
}

// Opener opens a broker for a parsed URL whose scheme it registered. It must
// reject unknown or invalid URL parameters with an error that names the
// parameter (a *ParamError, e.g. from Params.Err).
type Opener func(ctx context.Context, u *url.URL, opts Options) (*Broker, error)

var (
	mu      sync.RWMutex
	openers = map[string]Opener{}
)

// Register makes an Opener available under a URL scheme (lower case, without
// "://"). Broker modules call it from init. It panics when opener is nil or
// the scheme is already registered, like database/sql.Register.
func Register(scheme string, opener Opener) {
	mu.Lock()
	defer mu.Unlock()
	scheme = strings.ToLower(scheme)
	if opener == nil {
		panic("outboxbroker: Register opener is nil for scheme " + scheme)
	}
	if scheme == "" {
		panic("outboxbroker: Register with an empty scheme")
	}
	if _, dup := openers[scheme]; dup {
		panic("outboxbroker: Register called twice for scheme " + scheme)
	}
	openers[scheme] = opener
}

// Schemes returns the registered URL schemes, sorted.
func Schemes() []string {
	mu.RLock()
	defer mu.RUnlock()
	s := make([]string, 0, len(openers))
	for k := range openers {
		s = append(s, k)
	}
	slices.Sort(s)
	return s
}

// ErrUnknownScheme is returned (wrapped) by Open when no broker module
// registered the URL's scheme; the message lists the registered schemes.
var ErrUnknownScheme = errors.New("outboxbroker: unknown broker URL scheme")

// Open parses rawURL, finds the Opener registered for its scheme and opens
// the broker. Errors never contain the URL's secrets.
func Open(ctx context.Context, rawURL string, opts Options) (*Broker, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error quotes the raw URL, secrets included: do not wrap it.
		return nil, fmt.Errorf("outboxbroker: cannot parse broker URL %s", Redact(rawURL))
	}
	if u.Scheme == "" {
		return nil, fmt.Errorf("outboxbroker: broker URL %s has no scheme (registered: %s)",
			Redact(rawURL), strings.Join(Schemes(), ", "))
	}
	mu.RLock()
	op, ok := openers[strings.ToLower(u.Scheme)]
	mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q in %s (registered: %s; import the broker module, e.g. _ \"github.com/outboxkit/outboxkit/brokers/nats\")",
			ErrUnknownScheme, u.Scheme, Redact(rawURL), strings.Join(Schemes(), ", "))
	}
	b, err := op(ctx, u, opts)
	if err != nil {
		return nil, fmt.Errorf("outboxbroker: open %s: %w", Redact(rawURL), err)
	}
	return b, nil
}

// secretWords mark query parameters whose values Redact hides.
var secretWords = []string{"pass", "secret", "token", "credential", "auth", "jwt", "nkey", "apikey", "api_key", "sasl"}

// Redact returns rawURL with secrets replaced by "xxxxx": the password in
// the userinfo, a bare userinfo user (brokers such as NATS and Redis take a
// token there), and the values of query parameters whose name suggests a
// secret (containing pass, secret, token, credential, auth, jwt, nkey,
// apikey, sasl). An unparseable URL yields a placeholder, never the input.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "<unparseable broker URL>"
	}
	if u.User != nil {
		if _, hasPass := u.User.Password(); hasPass {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		} else if u.User.Username() != "" {
			u.User = url.User("xxxxx")
		}
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k, vs := range q {
			lk := strings.ToLower(k)
			for _, w := range secretWords {
				if strings.Contains(lk, w) {
					for i := range vs {
						vs[i] = "xxxxx"
					}
					break
				}
			}
		}
		u.RawQuery = q.Encode()
	}
	if u.Fragment != "" {
		u.Fragment = "xxxxx"
	}
	return u.String()
}

// NewBroker builds a Broker from a publisher and a subscriber constructor,
// closing the publisher when the subscriber cannot be made. Broker modules'
// Openers use it; Close closes both.
func NewBroker(features Features, newPub func() (message.Publisher, error), newSub func() (message.Subscriber, error)) (*Broker, error) {
	pub, err := newPub()
	if err != nil {
		return nil, err
	}
	sub, err := newSub()
	if err != nil {
		_ = pub.Close()
		return nil, err
	}
	return &Broker{
		Publisher:  pub,
		Subscriber: sub,
		Features:   features,
		CloseFunc:  func() error { return errors.Join(pub.Close(), sub.Close()) },
	}, nil
}

// BaseURL returns u without its query: the connection URL, once an Opener
// has read the broker parameters from the query.
func BaseURL(u *url.URL) string {
	base := *u
	base.RawQuery = ""
	return base.String()
}
