package invoicing_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/outboxkit/outboxkit/cmd/outboxgen/examples/invoicing"
	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// captureDriver records inserted rows; the other Driver methods are never
// called by Outbox.Insert (calling one panics on the nil embedded interface).
type captureDriver struct {
	outboxdriver.Driver
	rows []outboxdriver.InsertEvent
}

func (d *captureDriver) EventInsert(_ context.Context, p *outboxdriver.EventInsertParams) error {
	d.rows = append(d.rows, p.Events...)
	return nil
}

func (d *captureDriver) Table() string { return "outbox" }

func validInvoice() invoicing.InvoiceIssued {
	paris := time.FixedZone("CET", 3600)
	return invoicing.InvoiceIssued{
		InvoiceID: "0190b1f4-7c1e-7a6e-9f3a-2b1c4d5e6f70",
		PatientID: "0190b1f4-7c1e-7a6e-9f3a-2b1c4d5e6f71",
		Number:    "INV-2025-000042",
		Amount:    invoicing.Money{Amount: "1234.50", Currency: "EUR"},
		IssuedAt:  time.Date(2025, 3, 14, 10, 30, 0, 0, paris),
		Lines: []invoicing.InvoiceLine{
			{ActCode: "ABCD123", Label: "Consultation", Quantity: 1, UnitPrice: invoicing.Money{Amount: "0.10", Currency: "EUR"}},
			{ActCode: "EFGH456", Label: "Soins", Quantity: 3, UnitPrice: invoicing.Money{Amount: "411.4666666666666666666666", Currency: "EUR"}},
		},
		Status: invoicing.InvoiceStatusIssued,
	}
}

// toMessage builds the message the relay publishes for a stored row: the
// payload, the event's headers and the outbox metadata.
func toMessage(row outboxdriver.InsertEvent) *message.Message {
	msg := message.NewMessage(row.ID, row.Payload)
	var h map[string]string
	if err := json.Unmarshal(row.Headers, &h); err != nil {
		panic(err)
	}
	for k, v := range h {
		msg.Metadata.Set(k, v)
	}
	msg.Metadata.Set(outbox.MetadataEventID, row.ID)
	msg.Metadata.Set(outbox.MetadataEventType, row.Type)
	msg.Metadata.Set(outbox.MetadataKey, row.Key)
	return msg
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	drv := &captureDriver{}
	ob, err := outbox.New(drv, outbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	// Outbox.Insert hands the tx to the driver only; the capture driver
	// ignores it, so a zero *sql.Tx is enough here.
	tx := new(sql.Tx)
	in := validInvoice()
	ev, err := invoicing.InsertInvoiceIssued(context.Background(), ob, tx, in)
	if err != nil {
		t.Fatalf("InsertInvoiceIssued: %v", err)
	}
	if len(drv.rows) != 1 {
		t.Fatalf("inserted %d rows, want 1", len(drv.rows))
	}
	row := drv.rows[0]
	if ev.ID == "" || row.ID != ev.ID {
		t.Fatalf("event id %q, row id %q", ev.ID, row.ID)
	}
	if row.Type != "care.invoice.issued" || row.Topic != "care.invoices" || row.Key != in.InvoiceID {
		t.Fatalf("type/topic/key = %q/%q/%q", row.Type, row.Topic, row.Key)
	}
	if !bytes.Contains(row.Headers, []byte(`"event-version":"1"`)) {
		t.Fatalf("headers %s lack event-version 1", row.Headers)
	}

	// Decimals and money travel as exact strings, never floats; timestamps in UTC.
	for _, want := range []string{
		`"amount":{"amount":"1234.50","currency":"EUR"}`,
		`"unit_price":{"amount":"0.10","currency":"EUR"}`,
		`"amount":"411.4666666666666666666666"`,
		`"issued_at":"2025-03-14T09:30:00Z"`,
		`"status":"issued"`,
	} {
		if !bytes.Contains(row.Payload, []byte(want)) {
			t.Errorf("payload lacks %s:\n%s", want, row.Payload)
		}
	}
	if bytes.Contains(row.Payload, []byte(`"note"`)) {
		t.Errorf("optional nil note was encoded: %s", row.Payload)
	}

	// The payload validates against the JSON Schema generated next to the code.
	sch := compileSchema(t, "care.invoice.issued.v1.schema.json")
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(row.Payload))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(doc); err != nil {
		t.Fatalf("payload does not match its JSON Schema: %v", err)
	}

	// Decode through the dispatcher, as a Watermill handler would.
	dec, err := invoicing.NewDecoder(invoicing.DecoderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var got invoicing.InvoiceIssued
	calls := 0
	dec.OnInvoiceIssued(func(ctx context.Context, msg *message.Message, ev invoicing.InvoiceIssued) error {
		calls++
		got = ev
		return nil
	})
	var handler message.NoPublishHandlerFunc = dec.Handle
	if err := handler(toMessage(row)); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if calls != 1 {
		t.Fatalf("handler called %d times", calls)
	}
	if got.Amount != in.Amount || got.Lines[0].UnitPrice.Amount != "0.10" || got.Lines[1].UnitPrice.Amount != "411.4666666666666666666666" {
		t.Fatalf("money not exact after round trip: %+v %+v", got.Amount, got.Lines)
	}
	if !got.IssuedAt.Equal(in.IssuedAt) || got.IssuedAt.Location() != time.UTC {
		t.Fatalf("issued_at %v, want %v in UTC", got.IssuedAt, in.IssuedAt)
	}
	if got.Status != invoicing.InvoiceStatusIssued || got.Number != in.Number || got.Note != nil {
		t.Fatalf("decoded %+v", got)
	}
	if err := got.Validate(); err != nil {
		t.Fatalf("decoded event invalid: %v", err)
	}
}

func compileSchema(t *testing.T, file string) *jsonschema.Schema {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("file:///"+file, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("file:///" + file)
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

func fieldErrors(err error) map[string]string {
	out := map[string]string{}
	var walk func(error)
	walk = func(err error) {
		var fe *invoicing.FieldError
		if errors.As(err, &fe) && err == error(fe) {
			out[fe.Path] = fe.Reason
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		if e := errors.Unwrap(err); e != nil {
			walk(e)
		}
	}
	walk(err)
	return out
}

func TestValidateRejectsBadValues(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		mutate   func(*invoicing.InvoiceIssued)
		path     string
		contains string
	}{
		"pattern":       {func(e *invoicing.InvoiceIssued) { e.Number = "INV-25-1" }, "number", "does not match pattern"},
		"max_length":    {func(e *invoicing.InvoiceIssued) { e.Lines[1].Label = strings.Repeat("é", 121) }, "lines[1].label", "longer than 120 characters"},
		"enum":          {func(e *invoicing.InvoiceIssued) { e.Status = "archived" }, "status", `unknown value "archived"`},
		"enum zero":     {func(e *invoicing.InvoiceIssued) { e.Status = invoicing.InvoiceStatusUnknown }, "status", `unknown value ""`},
		"uuid":          {func(e *invoicing.InvoiceIssued) { e.PatientID = "42" }, "patient_id", "must be a UUID"},
		"currency":      {func(e *invoicing.InvoiceIssued) { e.Amount.Currency = "USD" }, "amount.currency", "must be EUR"},
		"decimal":       {func(e *invoicing.InvoiceIssued) { e.Amount.Amount = "1e3" }, "amount.amount", "must be a decimal"},
		"decimal min":   {func(e *invoicing.InvoiceIssued) { e.Amount.Amount = "0.00" }, "amount.amount", "must be at least 0.01"},
		"int max":       {func(e *invoicing.InvoiceIssued) { e.Lines[0].Quantity = 1001 }, "lines[0].quantity", "must be at most 1000"},
		"min_items":     {func(e *invoicing.InvoiceIssued) { e.Lines = []invoicing.InvoiceLine{} }, "lines", "at least 1 item"},
		"nil array":     {func(e *invoicing.InvoiceIssued) { e.Lines = nil }, "lines", "must not be nil"},
		"zero time":     {func(e *invoicing.InvoiceIssued) { e.IssuedAt = time.Time{} }, "issued_at", "must be set"},
		"optional rule": {func(e *invoicing.InvoiceIssued) { n := strings.Repeat("x", 501); e.Note = &n }, "note", "longer than 500"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ev := validInvoice()
			tt.mutate(&ev)
			_, err := ev.OutboxEvent()
			if !errors.Is(err, outbox.ErrInvalidEvent) {
				t.Fatalf("OutboxEvent error %v, want outbox.ErrInvalidEvent", err)
			}
			fes := fieldErrors(err)
			if len(fes) != 1 || !strings.Contains(fes[tt.path], tt.contains) {
				t.Fatalf("field errors %q, want exactly %s: ...%s...", fes, tt.path, tt.contains)
			}
		})
	}
	t.Run("valid", func(t *testing.T) {
		t.Parallel()
		if err := validInvoice().Validate(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestDecoder(t *testing.T) {
	t.Parallel()
	valid, err := validInvoice().OutboxEvent()
	if err != nil {
		t.Fatal(err)
	}
	msgOf := func(typ, ver string, payload []byte) *message.Message {
		m := message.NewMessage("0190b1f4-7c1e-7a6e-9f3a-2b1c4d5e6f7f", payload)
		m.Metadata.Set(outbox.MetadataEventType, typ)
		if ver != "" {
			m.Metadata.Set(invoicing.HeaderEventVersion, ver)
		}
		return m
	}
	newDec := func(t *testing.T, policy invoicing.UnknownEventPolicy, skipped *int) *invoicing.Decoder {
		d, err := invoicing.NewDecoder(invoicing.DecoderConfig{Unknown: policy, OnSkip: func(*message.Message, error) { *skipped++ }})
		if err != nil {
			t.Fatal(err)
		}
		return d.OnInvoiceIssued(func(context.Context, *message.Message, invoicing.InvoiceIssued) error { return nil })
	}

	t.Run("unknown type errors by default", func(t *testing.T) {
		t.Parallel()
		skipped := 0
		err := newDec(t, invoicing.UnknownEventError, &skipped).Handle(msgOf("care.invoice.voided", "1", []byte(`{}`)))
		if !errors.Is(err, invoicing.ErrUnknownEvent) || skipped != 0 {
			t.Fatalf("err %v skipped %d", err, skipped)
		}
	})
	t.Run("unknown version errors by default", func(t *testing.T) {
		t.Parallel()
		skipped := 0
		err := newDec(t, invoicing.UnknownEventError, &skipped).Handle(msgOf(invoicing.InvoiceIssuedType, "7", valid.Payload))
		if !errors.Is(err, invoicing.ErrUnknownEvent) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("unknown type skipped under skip policy", func(t *testing.T) {
		t.Parallel()
		skipped := 0
		err := newDec(t, invoicing.UnknownEventSkip, &skipped).Handle(msgOf("care.invoice.voided", "1", []byte(`{}`)))
		if err != nil || skipped != 1 {
			t.Fatalf("err %v skipped %d", err, skipped)
		}
	})
	t.Run("no handler follows the policy", func(t *testing.T) {
		t.Parallel()
		d, _ := invoicing.NewDecoder(invoicing.DecoderConfig{})
		if err := d.Handle(msgOf(invoicing.InvoiceIssuedType, "1", valid.Payload)); !errors.Is(err, invoicing.ErrUnknownEvent) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("missing version header means 1", func(t *testing.T) {
		t.Parallel()
		skipped := 0
		if err := newDec(t, invoicing.UnknownEventError, &skipped).Handle(msgOf(invoicing.InvoiceIssuedType, "", valid.Payload)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("decimal as JSON number is malformed", func(t *testing.T) {
		t.Parallel()
		p := bytes.Replace(valid.Payload, []byte(`"amount":"1234.50"`), []byte(`"amount":1234.50`), 1)
		skipped := 0
		err := newDec(t, invoicing.UnknownEventSkip, &skipped).Handle(msgOf(invoicing.InvoiceIssuedType, "1", p))
		if !errors.Is(err, invoicing.ErrMalformedEvent) {
			t.Fatalf("err %v, want ErrMalformedEvent", err)
		}
	})
	t.Run("unknown enum value and unknown field are tolerated", func(t *testing.T) {
		t.Parallel()
		p := bytes.Replace(valid.Payload, []byte(`"status":"issued"`), []byte(`"status":"disputed","added_later":true`), 1)
		d, _ := invoicing.NewDecoder(invoicing.DecoderConfig{})
		var got invoicing.InvoiceStatus = "sentinel"
		d.OnInvoiceIssued(func(_ context.Context, _ *message.Message, ev invoicing.InvoiceIssued) error {
			got = ev.Status
			return nil
		})
		if err := d.Handle(msgOf(invoicing.InvoiceIssuedType, "1", p)); err != nil {
			t.Fatal(err)
		}
		if got != invoicing.InvoiceStatusUnknown {
			t.Fatalf("status %q, want InvoiceStatusUnknown", got)
		}
	})
	t.Run("handler error is returned", func(t *testing.T) {
		t.Parallel()
		boom := errors.New("boom")
		d, _ := invoicing.NewDecoder(invoicing.DecoderConfig{})
		d.OnInvoiceIssued(func(context.Context, *message.Message, invoicing.InvoiceIssued) error { return boom })
		if err := d.Handle(msgOf(invoicing.InvoiceIssuedType, "1", valid.Payload)); !errors.Is(err, boom) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("invalid policy", func(t *testing.T) {
		t.Parallel()
		if _, err := invoicing.NewDecoder(invoicing.DecoderConfig{Unknown: 9}); err == nil {
			t.Fatal("NewDecoder accepted policy 9")
		}
	})
}
