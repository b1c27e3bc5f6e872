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
	"regexp"
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

// secretWords mark query parameters whose values Redact hides: a name
// containing one of them, or equal to one of secretNames. Mechanisms, user
// names and other settings stay readable.
var (
	secretWords = []string{"pass", "secret", "token", "credential", "jwt", "nkey", "apikey", "api_key"}
	secretNames = []string{"auth", "key", "sasl"}
)

func secretParam(name string) bool {
	name = strings.ToLower(name)
	return slices.Contains(secretNames, name) || slices.ContainsFunc(secretWords, func(w string) bool { return strings.Contains(name, w) })
}

var (
	rawUserinfoRe = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#@]*)@`)
	rawParamRe    = regexp.MustCompile(`([?&])([^=&#]*)=([^&#]*)`)
)

// Redact returns rawURL with secrets replaced by "xxxxx": the password in
// the userinfo, a bare userinfo user (brokers such as NATS and Redis take a
// token there), and the values of query parameters whose name suggests a
// secret (containing pass, secret, token, credential, jwt, nkey or apikey,
// or named auth, key or sasl). A URL that does not parse (a bad port, a
// stray %) is redacted the same way textually, so the error that follows
// still shows what is wrong with it.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return redactRaw(rawURL)
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
			if secretParam(k) {
				for i := range vs {
					vs[i] = "xxxxx"
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

// redactRaw is Redact for a string url.Parse refuses.
func redactRaw(raw string) string {
	raw = rawUserinfoRe.ReplaceAllStringFunc(raw, func(m string) string {
		sub := rawUserinfoRe.FindStringSubmatch(m)
		if user, _, hasPass := strings.Cut(sub[2], ":"); hasPass {
			return sub[1] + user + ":xxxxx@"
		}
		return sub[1] + "xxxxx@"
	})
	raw = rawParamRe.ReplaceAllStringFunc(raw, func(m string) string {
		sub := rawParamRe.FindStringSubmatch(m)
		if secretParam(sub[2]) {
			return sub[1] + sub[2] + "=xxxxx"
		}
		return m
	})
	if i := strings.IndexByte(raw, '#'); i >= 0 {
		raw = raw[:i+1] + "xxxxx"
	}
	return raw
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

// metadataResend is outbox.MetadataResend (this package does not import
// the outbox core).
const metadataResend = "outbox_resend"

// DedupID returns the id a broker that drops a message id it has stored
// (NATS JetStream's Nats-Msg-Id) should deduplicate msg by: its UUID (the
// event id), followed by "/resend-N" when its metadata outbox_resend holds
// N, a decimal of 1 to 9 digits (a resend the receiver must get). A relay
// that publishes the same send twice (a crash before its outcome was
// recorded) uses the same id both times, so the broker still drops the
// second; any other outbox_resend value is ignored.
func DedupID(msg *message.Message) string {
	n := msg.Metadata.Get(metadataResend)
	if n == "" || len(n) > 9 || strings.Trim(n, "0123456789") != "" || strings.Trim(n, "0") == "" {
		return msg.UUID
	}
	return msg.UUID + "/resend-" + n
}
