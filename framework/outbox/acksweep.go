package outbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// ackSweepBatch bounds the overdue acks one sweep statement returns.
const ackSweepBatch = 200

// sweepAcks runs SweepAcks every AckSweepInterval until ctx ends, when the
// driver stores acknowledgments and the sweep is on.
func (r *Relay) sweepAcks(ctx context.Context) {
	if _, ok := r.driver.(outboxdriver.Acknowledger); !ok || r.cfg.AckSweepInterval < 0 {
		return
	}
	t := time.NewTicker(r.cfg.AckSweepInterval)
	defer t.Stop()
	warned := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := r.SweepAcks(ctx); err != nil && ctx.Err() == nil {
			if errors.Is(err, ErrNotMigrated) {
				if !warned {
					r.log.Warn("acknowledgment sweep: ack table missing (run migrations)", "err", err)
					warned = true
				}
				continue
			}
			r.log.Warn("acknowledgment sweep failed", "err", err)
		}
	}
}

// AckSweep reports what one SweepAcks did.
type AckSweep struct {
	// Resent counts events published again after silence past their deadline.
	Resent int
	// Unacknowledged counts events given up on after MaxResends resends.
	Unacknowledged int
}

// SweepAcks resends every event whose business acknowledgment is overdue
// and marks unacknowledged those resent AckPolicy.MaxResends times
// already. Run calls it every RelayConfig.AckSweepInterval; call it
// yourself with the sweep off (negative interval) to drive it otherwise.
//
// Each resend is first counted with a conditional update of the ack row
// (so that of several relays sweeping at once exactly one resends), then
// made by the driver's retry-by-id path (Driver.EventRetry, as Outbox.Retry
// does), which makes the event pending again with its id: the relay that
// claims it publishes it like any retried event, with MetadataResend
// counting the resend so that a broker that drops a repeated message id
// (NATS JetStream) delivers it. A crash between the two
// leaves the event delivered and still overdue: the next sweep resends it.
func (r *Relay) SweepAcks(ctx context.Context) (AckSweep, error) {
	var out AckSweep
	ack, ok := r.driver.(outboxdriver.Acknowledger)
	if !ok {
		return out, ErrAckUnsupported
	}
	for {
		due, err := ack.AckListDue(ctx, &outboxdriver.AckListDueParams{Limit: ackSweepBatch})
		if err != nil {
			return out, fmt.Errorf("outbox: ack sweep: %w", err)
		}
		var resend []string
		for _, a := range due {
			mark := &outboxdriver.AckMarkParams{EventID: a.EventID, Resends: a.Resends}
			if a.Resends >= a.MaxResends {
				done, err := ack.AckMarkUnacknowledged(ctx, mark)
				if err != nil {
					return out, fmt.Errorf("outbox: ack sweep: %w", err)
				}
				if done {
					out.Unacknowledged++
					r.log.Warn("event unacknowledged: no answer after its resends", "event_id", a.EventID, "resends", a.Resends)
				}
				continue
			}
			won, err := ack.AckMarkResent(ctx, mark)
			if err != nil {
				return out, fmt.Errorf("outbox: ack sweep: %w", err)
			}
			if won {
				resend = append(resend, a.EventID)
			}
		}
		if len(resend) > 0 {
			if _, err := r.driver.EventRetry(ctx, &outboxdriver.EventRetryParams{IDs: resend, Resend: true}); err != nil {
				return out, fmt.Errorf("outbox: ack sweep: resend: %w", err)
			}
			out.Resent += len(resend)
			r.log.Info("events resent: acknowledgment overdue", "events", len(resend))
		}
		if len(due) < ackSweepBatch {
			return out, nil
		}
	}
}
