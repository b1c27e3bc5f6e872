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
	want := Summary{Issued: 8, RolledBack: 1, Dead: 3, Resent: 3, Acknowledged: 8, Duplicates: 1}
	if *s != want {
		t.Fatalf("summary %+v, want %+v", *s, want)
	}
}
