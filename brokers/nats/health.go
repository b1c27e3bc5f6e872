package nats

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
)

// Healthy implements outboxbroker.HealthChecker: a JetStream account-info
// request on the publisher's own connection, answered within ctx. It fails
// while the connection is down or reconnecting, and when the server accepts
// the connection but does not answer (a stalled server).
func (p *Publisher) Healthy(ctx context.Context) error {
	if _, err := p.js.AccountInfo(nats.Context(ctx)); err != nil {
		return fmt.Errorf("nats: jetstream does not answer: %w", err)
	}
	return nil
}
