package invoicing_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outboxkit/cmd/outboxgen/examples/invoicing"
	"github.com/outboxkit/outboxkit/framework/outbox"
)

// FuzzDecoderHandle feeds random payloads and metadata to the generated
// decoder. Handle must never panic: it returns nil (a handled or skipped
// message) or an error. When a payload decodes and the event validates,
// encoding it again must be stable (encode(decode(encode(ev))) ==
// encode(ev)). go test runs the seeds; go test -fuzz=FuzzDecoderHandle
// explores.
func FuzzDecoderHandle(f *testing.F) {
	valid, err := validInvoice().OutboxEvent()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid.Payload, invoicing.InvoiceIssuedType, "1", false)
	f.Add(valid.Payload, invoicing.InvoiceIssuedType, "", true)
	f.Add(valid.Payload, invoicing.InvoiceIssuedType, "2", false)
	f.Add([]byte(`{}`), invoicing.InvoiceIssuedType, "1", false)
	f.Add([]byte(`null`), invoicing.InvoiceIssuedType, "1", false)
	f.Add([]byte(`{"lines":[null,{"unit_price":null}],"amount":{"amount":1.5},"issued_at":"0000-01-01T00:00:00+01:00"}`), invoicing.InvoiceIssuedType, "1", false)
	f.Add([]byte(`{"status":"disputed","note":null,"lines":[]}`), invoicing.InvoiceIssuedType, "1", true)
	f.Add([]byte(`[`), "care.invoice.voided", "x", true)
	f.Add([]byte{0xff, 0xfe, 0}, "", "-1", false)

	f.Fuzz(func(t *testing.T, payload []byte, typ, ver string, skip bool) {
		policy := invoicing.UnknownEventError
		if skip {
			policy = invoicing.UnknownEventSkip
		}
		dec, err := invoicing.NewDecoder(invoicing.DecoderConfig{Unknown: policy, OnSkip: func(*message.Message, error) {}})
		if err != nil {
			t.Fatal(err)
		}
		var got *invoicing.InvoiceIssued
		dec.OnInvoiceIssued(func(_ context.Context, _ *message.Message, ev invoicing.InvoiceIssued) error {
			got = &ev
			return nil
		})
		msg := message.NewMessage("0190b1f4-7c1e-7a6e-9f3a-2b1c4d5e6f70", payload)
		msg.Metadata.Set(outbox.MetadataEventType, typ)
		msg.Metadata.Set(invoicing.HeaderEventVersion, ver)
		err = dec.Handle(msg)
		if err != nil && !errors.Is(err, invoicing.ErrMalformedEvent) && !errors.Is(err, invoicing.ErrUnknownEvent) {
			t.Fatalf("Handle error %v wraps neither ErrMalformedEvent nor ErrUnknownEvent", err)
		}
		if got == nil {
			return
		}
		if err := got.Validate(); err != nil {
			return
		}
		ev, err := got.OutboxEvent()
		if err != nil {
			return // e.g. a timestamp whose UTC year is outside 0000-9999
		}
		var again invoicing.InvoiceIssued
		if err := json.Unmarshal(ev.Payload, &again); err != nil {
			t.Fatalf("re-decoding our own payload: %v\n%s", err, ev.Payload)
		}
		ev2, err := again.OutboxEvent()
		if err != nil {
			t.Fatalf("re-encoding: %v", err)
		}
		if !bytes.Equal(ev.Payload, ev2.Payload) {
			t.Fatalf("encoding not stable:\n%s\n%s", ev.Payload, ev2.Payload)
		}
	})
}
