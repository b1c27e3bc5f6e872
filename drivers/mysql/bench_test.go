package mysql

import (
	"fmt"
	"testing"
	"time"

	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// BenchmarkInsert measures one application transaction writing one event:
// BEGIN, INSERT, COMMIT (with interpolateParams, as Open sets it).
func BenchmarkInsert(b *testing.B) {
	bb := setup(b)
	ob := newOutbox(b, bb.drv)
	payload := make([]byte, 256)
	for b.Loop() {
		tx, err := bb.db.BeginTx(bb.ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := ob.Insert(bb.ctx, tx, &outbox.Event{Type: "bench", Topic: "t", Key: "k", Payload: payload}); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInsertBatch100 measures one transaction writing 100 events in one
// multi-row INSERT.
func BenchmarkInsertBatch100(b *testing.B) {
	bb := setup(b)
	ob := newOutbox(b, bb.drv)
	payload := make([]byte, 256)
	events := make([]*outbox.Event, 100)
	for b.Loop() {
		for i := range events {
			events[i] = &outbox.Event{Type: "bench", Topic: "t", Key: fmt.Sprint("k", i%10), Payload: payload}
		}
		tx, err := bb.db.BeginTx(bb.ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := ob.Insert(bb.ctx, tx, events...); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(events))/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkClaim measures the relay's database work for one batch of 100:
// claim (lock, select, lease, commit) then mark delivered, on a table that
// also holds delivered history.
func BenchmarkClaim(b *testing.B) {
	bb := setup(b)
	fill := func(n int) {
		batch := make([]outboxdriver.InsertEvent, 0, 1000)
		for i := range n {
			batch = append(batch, newEvent(fmt.Sprint("k", i%50)))
			if len(batch) == cap(batch) || i == n-1 {
				bb.insert(b, batch...)
				batch = batch[:0]
			}
		}
	}
	fill(10000)
	claimed := 0
	for b.Loop() {
		rows, err := bb.drv.EventClaimBatch(bb.ctx, &outboxdriver.EventClaimBatchParams{RelayID: "bench", Limit: 100, Lease: time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		if len(rows) == 0 {
			b.StopTimer()
			fill(10000)
			b.StartTimer()
			continue
		}
		claimed += len(rows)
		if _, err := bb.drv.EventMarkDelivered(bb.ctx, &outboxdriver.EventMarkDeliveredParams{RelayID: "bench", IDs: ids(rows)}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(claimed)/b.Elapsed().Seconds(), "events/s")
}
