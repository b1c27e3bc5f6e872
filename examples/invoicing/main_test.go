package main

import (
	"context"
	"testing"
	"time"

	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

func TestInvoicingStory(t *testing.T) {
	t.Parallel()
	outboxtest.RequireService(t, outboxtest.Postgres)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := run(ctx, outboxtest.PostgresURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// One answer is lost, so at least one resend after silence; more only
	// if the machine is slow enough for another answer to miss a deadline.
	if s.AckResends < 1 {
		t.Fatalf("summary %+v: the invoice whose answer was lost was not resent", *s)
	}
	want := Summary{Issued: 8, RolledBack: 1, Dead: 3, Resent: 3, Acknowledged: 8, Duplicates: 1 + s.AckResends,
		AckSuccess: 7, AckRejected: 1, AckResends: s.AckResends}
	if *s != want {
		t.Fatalf("summary %+v, want %+v", *s, want)
	}
}
