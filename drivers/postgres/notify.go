package postgres

import (
	"context"
	"time"

	"github.com/lib/pq"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

var _ outboxdriver.Notifier = (*Driver)(nil)

// EventNotifications implements outboxdriver.Notifier: with
// Config.NotifyDSN set it LISTENs on the table's channel over a dedicated
// connection, and signals after each notification and each reconnection
// (events committed while the connection was down are found by the next
// claim). Without NotifyDSN it returns a nil channel.
func (d *Driver) EventNotifications(ctx context.Context) (<-chan struct{}, error) {
	if d.channel == "" {
		return nil, nil
	}
	l := pq.NewListener(d.cfg.NotifyDSN, 10*time.Millisecond, 5*time.Second, nil)
	if err := l.Listen(d.channel); err != nil {
		l.Close()
		return nil, interpretError(err)
	}
	out := make(chan struct{}, 1)
	go func() {
		defer close(out)
		defer l.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case <-l.Notify: // a notification, or nil after a reconnection
				select {
				case out <- struct{}{}:
				default: // a wake-up is already pending
				}
			}
		}
	}()
	return out, nil
}
