package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v3/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outboxkit/framework/outbox"
)

// rawBroker publishes cfg.Events messages straight to the broker with as
// many in flight as the relay has (see inFlight). Each worker publishes one message at a
// time and waits for its acknowledgement, with PublishAsync when the
// publisher implements outbox.AsyncPublisher (its fastest way, the one the
// relay's direct path uses), else with Publish; workers do not wait for
// each other between batches, so this is the broker's ceiling at that
// concurrency.
func (r *run) rawBroker(ctx context.Context, topic string) (*RawBroker, error) {
	n := r.cfg.Events
	conc, source := r.inFlight()
	conc = min(conc, n)
	r.progress("%s: raw publish of %d messages, %d in flight", r.scheme, n, conc)
	payload := r.payload()
	publish := func(msg *message.Message) error { return r.broker.Publisher.Publish(topic, msg) }
	method := "Publish"
	if ap, ok := r.broker.Publisher.(outbox.AsyncPublisher); ok {
		method = "PublishAsync"
		publish = func(msg *message.Message) error {
			wait, err := ap.PublishAsync(topic, msg)
			if err != nil {
				return err
			}
			return wait(ctx)
		}
	}
	var next atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				msg := message.NewMessage(watermill.NewUUID(), payload)
				msg.Metadata.Set("outbox_event_id", msg.UUID)
				msg.Metadata.Set("outbox_event_type", "bench.event")
				msg.Metadata.Set("outbox_key", "key-"+strconv.Itoa(i%r.cfg.Keys))
				msg.Metadata.Set("outbox_created_at", time.Now().UTC().Format(time.RFC3339Nano))
				if err := publish(msg); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	d := time.Since(start)
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &RawBroker{Events: n, InFlight: conc, InFlightSource: source, Method: method, Seconds: d.Seconds(), EventsPerSec: float64(n) / d.Seconds()}, nil
}

// countingPublisher counts acknowledged publishes. Close does nothing: the
// forwarder's router closes its publisher, and the broker is closed by the
// cell.
type countingPublisher struct {
	message.Publisher
	n atomic.Int64
}

// Publish implements message.Publisher.
func (p *countingPublisher) Publish(topic string, msgs ...*message.Message) error {
	if err := p.Publisher.Publish(topic, msgs...); err != nil {
		return err
	}
	p.n.Add(int64(len(msgs)))
	return nil
}

// Close implements message.Publisher.
func (p *countingPublisher) Close() error { return nil }

// watermillForwarder is the baseline users start from: watermill-sql v3's
// publisher and subscriber with the default schema and offsets adapter of
// the dialect and default subscriber settings, wrapped by Watermill's
// forwarder. It seeds cfg.Events enveloped messages into a fresh topic table,
// then times forwarder.NewForwarder draining them to the same broker.
func (r *run) watermillForwarder(ctx context.Context, rep int, topic string) (f *Forwarder, err error) {
	sqlTopic := fmt.Sprintf("outboxbench_%s_fwd%d", r.id, rep)
	// A database handle of the cell's URL; the table it names is never
	// created.
	h, err := r.cfg.Open(ctx, r.cell.DBURL, sqlTopic)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	db := h.Driver.DB()
	var schema wmsql.SchemaAdapter
	var offsets wmsql.OffsetsAdapter
	switch r.dialect {
	case "postgres":
		schema, offsets = wmsql.DefaultPostgreSQLSchema{}, wmsql.DefaultPostgreSQLOffsetsAdapter{}
	case "mysql":
		schema, offsets = wmsql.DefaultMySQLSchema{}, wmsql.DefaultMySQLOffsetsAdapter{}
	default:
		return nil, fmt.Errorf("watermill-sql v3 has no default schema for %s", r.dialect)
	}
	defer dropTables(r.dialect, db, "watermill_"+sqlTopic, "watermill_offsets_"+sqlTopic)
	logger := watermill.NopLogger{}

	n := r.cfg.Events
	r.progress("%s: seeding %d messages through watermill-sql's publisher", r.dialect, n)
	sqlPub, err := wmsql.NewPublisher(db, wmsql.PublisherConfig{SchemaAdapter: schema, AutoInitializeSchema: true}, logger)
	if err != nil {
		return nil, err
	}
	pub := forwarder.NewPublisher(sqlPub, forwarder.PublisherConfig{ForwarderTopic: sqlTopic})
	payload := r.payload()
	for start := 0; start < n; start += 1000 {
		var msgs []*message.Message
		for i := start; i < min(start+1000, n); i++ {
			m := message.NewMessage(watermill.NewUUID(), payload)
			m.Metadata.Set("outbox_key", "key-"+strconv.Itoa(i%r.cfg.Keys))
			msgs = append(msgs, m)
		}
		if err := pub.Publish(topic, msgs...); err != nil {
			return nil, err
		}
	}

	sub, err := wmsql.NewSubscriber(db, wmsql.SubscriberConfig{
		ConsumerGroup: "outboxbench", SchemaAdapter: schema, OffsetsAdapter: offsets, InitializeSchema: true,
	}, logger)
	if err != nil {
		return nil, err
	}
	out := &countingPublisher{Publisher: r.broker.Publisher}
	fwd, err := forwarder.NewForwarder(sub, out, logger, forwarder.Config{ForwarderTopic: sqlTopic})
	if err != nil {
		return nil, err
	}
	r.progress("%s × %s: draining with Watermill's forwarder", r.dialect, r.scheme)
	done := make(chan error, 1)
	go func() { done <- fwd.Run(context.WithoutCancel(ctx)) }()
	defer func() {
		_ = fwd.Close()
		<-done
	}()
	select {
	case <-fwd.Running():
	case err := <-done:
		return nil, fmt.Errorf("forwarder stopped at start: %w", err)
	}
	start := time.Now()
	deadline := start.Add(5*time.Minute + time.Duration(n)*time.Second/100)
	for out.n.Load() < int64(n) {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("forwarder drained %d of %d in %s", out.n.Load(), n, time.Since(start).Round(time.Second))
		}
		if err := sleep(ctx, 10*time.Millisecond); err != nil {
			return nil, err
		}
	}
	d := time.Since(start)
	return &Forwarder{Events: n, Seconds: d.Seconds(), EventsPerSec: float64(n) / d.Seconds(),
		Settings: "watermill-sql v3.1.0 default schema and offsets adapter, default subscriber (batch 100, poll 1s)"}, nil
}
