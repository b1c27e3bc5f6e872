package redisstream

import (
	"context"
	"fmt"
	"net/url"

	"github.com/outboxkit/outboxkit/framework/outboxbroker"
)

func init() {
	outboxbroker.RegisterHealth("redis", health)
	outboxbroker.RegisterHealth("rediss", health)
}

// health is the outboxbroker.HealthFunc of redis[s]:// URLs: a PING on a
// client of the same URL (the Watermill publisher does not expose its
// client), answered within ctx.
func health(ctx context.Context, u *url.URL, opts outboxbroker.Options) error {
	cl, err := Config{URL: outboxbroker.BaseURL(u), Addr: opts.Addr}.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redisstream: PING: %w", err)
	}
	return nil
}
