// Package outboxotel carries OpenTelemetry trace context through the outbox:
// from the writer's span, into the stored event's headers, onto the published
// Watermill message, and into the consumer's span, so that a consumer's
// trace links to the producer's. It is a separate module so that the core
// does not depend on OpenTelemetry.
//
// Writer side:
//
//	ob, _ := outbox.New(drv, outbox.Config{Propagate: outboxotel.Propagate})
//
// Consumer side (any Watermill subscriber):
//
//	ctx := outboxotel.Extract(msg.Context(), msg)
//	ctx, span := tracer.Start(ctx, "handle invoice.issued")
//
// Relay side, optional: outbox.RelayConfig{Middlewares: []message.HandlerMiddleware{outboxotel.PublishSpans(tp)}}
// records one span per publish attempt in the producer's trace.
package outboxotel

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/outboxkit/outboxkit/framework/outbox"
)

// Propagate is an outbox.Config.Propagate hook: it injects the trace
// context of ctx into the event's headers with the global TextMapPropagator
// (otel.SetTextMapPropagator), or, while the application has set none (the
// global one is then a no-op), with W3C TraceContext and Baggage
// (traceparent, tracestate, baggage).
func Propagate(ctx context.Context, headers map[string]string) {
	propagator(otel.GetTextMapPropagator()).Inject(ctx, propagation.MapCarrier(headers))
}

// Extract returns ctx carrying the trace context found in the message's
// metadata (where the relay puts the event's headers), read with the same
// propagator as Propagate.
func Extract(ctx context.Context, msg *message.Message) context.Context {
	return propagator(otel.GetTextMapPropagator()).Extract(ctx, propagation.MapCarrier(msg.Metadata))
}

// w3c is what Propagate and Extract use while no global propagator is set.
var w3c = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// propagator returns global unless it is a no-op (it carries no field: the
// default before otel.SetTextMapPropagator), and then W3C TraceContext and
// Baggage: without it, following the package documentation propagated
// nothing.
func propagator(global propagation.TextMapPropagator) propagation.TextMapPropagator {
	if len(global.Fields()) == 0 {
		return w3c
	}
	return global
}

// PublishSpans returns a forwarder middleware for outbox.RelayConfig that
// records a producer span per publish attempt, child of the writer's span
// (from the event's headers), with the event id, type and key as attributes.
// A nil provider means the global one.
func PublishSpans(tp trace.TracerProvider) message.HandlerMiddleware {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	tracer := tp.Tracer("github.com/outboxkit/outboxkit/framework/outboxotel")
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			// The relay gives the forwarder's envelope the event's metadata.
			md := msg.Metadata
			ctx := propagator(otel.GetTextMapPropagator()).Extract(msg.Context(), propagation.MapCarrier(md))
			ctx, span := tracer.Start(ctx, "outbox publish "+md[outbox.MetadataEventType],
				trace.WithSpanKind(trace.SpanKindProducer),
				trace.WithAttributes(
					attribute.String("messaging.message.id", md[outbox.MetadataEventID]),
					attribute.String("outbox.event.type", md[outbox.MetadataEventType]),
					attribute.String("outbox.event.key", md[outbox.MetadataKey]),
				))
			defer span.End()
			orig := msg.Context()
			msg.SetContext(ctx)
			defer msg.SetContext(orig)
			out, err := h(msg)
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			}
			return out, err
		}
	}
}
