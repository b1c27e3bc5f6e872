package kafka

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/IBM/sarama"

	"github.com/outboxkit/outboxkit/framework/outboxbroker"
)

func init() { outboxbroker.RegisterHealth("kafka", health) }

// health is the outboxbroker.HealthFunc of kafka:// URLs: a metadata
// request on a client of the URL's brokers (with its tls and SASL
// settings), answered within ctx. The Watermill publisher does not expose
// its client.
func health(ctx context.Context, u *url.URL, opts outboxbroker.Options) error {
	q := u.Query()
	cfg := Config{Brokers: []string{u.Host}}
	if extra := q.Get("brokers"); extra != "" {
		cfg.Brokers = append(cfg.Brokers, strings.Split(extra, ",")...)
	}
	if opts.Addr != "" {
		cfg.Brokers = []string{opts.Addr}
	}
	if v := q.Get("version"); v != "" {
		if ver, err := sarama.ParseKafkaVersion(v); err == nil {
			cfg.Version = ver
		}
	}
	if q.Get("tls") == "true" {
		cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: u.Hostname()}
	}
	if u.User != nil {
		cfg.SASL.Mechanism = q.Get("sasl_mechanism")
		cfg.SASL.User = u.User.Username()
		cfg.SASL.Password, _ = u.User.Password()
	}
	cfg = cfg.withDefaults()
	sc := cfg.base()
	sc.Net.DialTimeout, sc.Net.ReadTimeout, sc.Net.WriteTimeout = healthTimeout(ctx), healthTimeout(ctx), healthTimeout(ctx)
	sc.Metadata.Retry.Max = 0
	done := make(chan error, 1)
	go func() {
		cl, err := sarama.NewClient(cfg.Brokers, sc)
		if err == nil {
			err = cl.RefreshMetadata()
			_ = cl.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("kafka: metadata request: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kafka: brokers do not answer: %w", ctx.Err())
	}
}

// healthTimeout is what is left of ctx's deadline, or 3 s without one: the
// network timeouts of the check's client.
func healthTimeout(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(time.Until(dl), time.Millisecond)
	}
	return 3 * time.Second
}
