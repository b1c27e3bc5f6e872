package docs_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/outboxkit/outboxkit/drivers/postgres"
	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxotel"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

// TestTraceContextFlowsFromWriterToConsumer (framework/outboxotel on
// PostgreSQL; here so that the tracing module requires no driver): the
// consumer's span is in the writer's trace, and the relay's publish span is
// the writer span's child, with the application's global propagator and
// with none set (the documented wiring, outbox.Config{Propagate:
// outboxotel.Propagate} only, propagated nothing before W3C became the
// fallback). Not parallel: it sets OpenTelemetry's globals.
func TestTraceContextFlowsFromWriterToConsumer(t *testing.T) {
	for name, global := range map[string]propagation.TextMapPropagator{
		// An empty composite is what the global propagator is before
		// otel.SetTextMapPropagator: it has no fields and injects nothing.
		"no global propagator": propagation.NewCompositeTextMapPropagator(),
		"global TraceContext":  propagation.TraceContext{},
	} {
		t.Run(name, func(t *testing.T) { testTraceFlow(t, global) })
	}
}

func testTraceFlow(t *testing.T, global propagation.TextMapPropagator) {
	outboxtest.RequireService(t, outboxtest.Postgres)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(global)
	tracer := tp.Tracer("test")

	db, err := sql.Open("postgres", outboxtest.PostgresURL())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	table := outboxtest.UniqueName("otel")
	defer db.Exec(`DROP TABLE IF EXISTS "` + table + `", "` + table + `_migrations", "` + table + `_acks"`)
	drv, err := postgres.New(db, postgres.Config{Table: table})
	if err != nil {
		t.Fatal(err)
	}
	ob, _ := outbox.New(drv, outbox.Config{Propagate: outboxotel.Propagate})
	ctx := context.Background()
	if err := ob.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	broker := gochannel.NewGoChannel(gochannel.Config{Persistent: true}, watermill.NopLogger{})
	msgs, _ := broker.Subscribe(ctx, "invoices")

	writerCtx, writerSpan := tracer.Start(ctx, "issue invoice")
	tx, _ := db.BeginTx(writerCtx, nil)
	ev := &outbox.Event{Type: "invoice.issued", Topic: "invoices", Key: "INV-1", Payload: []byte(`{}`)}
	if err := ob.Insert(writerCtx, tx, ev); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	writerSpan.End()

	relay, err := outbox.NewRelay(drv, broker, outbox.RelayConfig{
		PollInterval: 20 * time.Millisecond,
		Middlewares:  []message.HandlerMiddleware{outboxotel.PublishSpans(tp)},
	})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- relay.Run(rctx) }()
	defer func() { stop(); <-done }()

	var msg *message.Message
	select {
	case msg = <-msgs:
		msg.Ack()
	case <-time.After(30 * time.Second):
		t.Fatal("not delivered")
	}
	_, consumerSpan := tracer.Start(outboxotel.Extract(ctx, msg), "send to teletransmission")
	consumerSpan.End()

	writerID := writerSpan.SpanContext().TraceID()
	if got := consumerSpan.SpanContext().TraceID(); got != writerID {
		t.Fatalf("consumer trace %s, writer trace %s", got, writerID)
	}
	// The publish span ends when Publish returns, which can be after the
	// consumer already has the message: wait for it (a hang guard, not a
	// timing assertion).
	var publish sdktrace.ReadOnlySpan
	for deadline := time.Now().Add(30 * time.Second); publish == nil; time.Sleep(10 * time.Millisecond) {
		for _, s := range rec.Ended() {
			if s.Name() == "outbox publish invoice.issued" {
				publish = s
			}
		}
		if publish == nil && time.Now().After(deadline) {
			t.Fatal("no publish span recorded")
		}
	}
	if publish.Parent().SpanID() != writerSpan.SpanContext().SpanID() || publish.SpanContext().TraceID() != writerID {
		t.Fatalf("publish span parent %s, want writer span %s", publish.Parent().SpanID(), writerSpan.SpanContext().SpanID())
	}
}
