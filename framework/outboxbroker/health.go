package outboxbroker

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// HealthChecker is implemented by a broker module's Publisher that can tell
// whether its own connection works: a round trip to the broker within ctx
// (a NATS JetStream request, an AMQP channel opened on the publisher's
// connection). Readiness checks call it; a broker that accepts connections
// but never answers fails it at ctx's deadline.
type HealthChecker interface {
	Healthy(ctx context.Context) error
}

// HealthFunc checks the broker a URL names, for modules whose Publisher is
// not a HealthChecker (a Watermill publisher used as is): for example a
// Redis PING on a client of the same URL. opts are the Options the broker
// was opened with.
type HealthFunc func(ctx context.Context, u *url.URL, opts Options) error

// ErrNoHealthCheck is returned by CheckHealth when the broker offers no
// health check; the caller falls back to what it can check itself.
var ErrNoHealthCheck = errors.New("outboxbroker: broker has no health check")

var healthFuncs = map[string]HealthFunc{}

// RegisterHealth makes f the health check of brokers opened with scheme
// (used when the broker's Publisher is not a HealthChecker). Broker modules
// call it from init, next to Register.
func RegisterHealth(scheme string, f HealthFunc) {
	mu.Lock()
	defer mu.Unlock()
	if f == nil {
		panic("outboxbroker: RegisterHealth func is nil for scheme " + scheme)
	}
	healthFuncs[strings.ToLower(scheme)] = f
}

// CheckHealth reports whether the broker b, opened from rawURL with opts,
// answers within ctx: b.Publisher's Healthy when it is a HealthChecker,
// otherwise the HealthFunc registered for the URL's scheme, otherwise
// ErrNoHealthCheck. Errors never contain the URL's secrets.
func CheckHealth(ctx context.Context, rawURL string, opts Options, b *Broker) error {
	if b != nil {
		if hc, ok := b.Publisher.(HealthChecker); ok {
			return hc.Healthy(ctx)
		}
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("outboxbroker: cannot parse broker URL %s", Redact(rawURL))
	}
	mu.RLock()
	f := healthFuncs[strings.ToLower(u.Scheme)]
	mu.RUnlock()
	if f == nil {
		return ErrNoHealthCheck
	}
	return f(ctx, u, opts)
}
