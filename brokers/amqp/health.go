package amqp

import (
	"context"
	"errors"
	"fmt"
)

// Healthy implements outboxbroker.HealthChecker: the publisher's connection
// is up and opens (and closes) a channel within ctx, a round trip a stalled
// broker does not answer.
func (p *Publisher) Healthy(ctx context.Context) error {
	if !p.conn.IsConnected() {
		return errors.New("amqp: not connected")
	}
	done := make(chan error, 1)
	go func() {
		ch, err := p.conn.Connection().Channel()
		if err == nil {
			err = ch.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("amqp: open channel: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("amqp: broker does not answer: %w", ctx.Err())
	}
}
