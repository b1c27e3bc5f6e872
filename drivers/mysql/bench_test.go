package mysql

import (
	"database/sql"
	"fmt"
	"testing"

	"github.com/google/uuid"

	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// BenchmarkInsert measures one application transaction writing one event:
// BEGIN, INSERT, COMMIT (with interpolateParams, as Open sets it), through
// the outbox ("outbox") and as a hand-written INSERT of the same row
// ("raw"), for the writer-cost comparison.
func BenchmarkInsert(b *testing.B) {
	bb := setup(b)
	ob := newOutbox(b, bb.drv)
	payload := make([]byte, 300)
	commit := func(b *testing.B, write func(*sql.Tx) error) {
		tx, err := bb.db.BeginTx(bb.ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := write(tx); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("outbox", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			commit(b, func(tx *sql.Tx) error {
				return ob.Insert(bb.ctx, tx, &outbox.Event{Type: "bench", Topic: "t", Key: fmt.Sprint(i % 1000), Payload: payload})
			})
		}
	})
	b.Run("raw", func(b *testing.B) {
		q := "INSERT INTO " + bb.drv.Table() + " (id, type, topic, event_key, payload, headers, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, '{}', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))"
		i := 0
		for b.Loop() {
			i++
			commit(b, func(tx *sql.Tx) error {
				_, err := tx.ExecContext(bb.ctx, q, uuid.NewString(), "bench", "t", fmt.Sprint(i%1000), payload)
				return err
			})
		}
	})
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
		batch, err := bb.drv.EventClaimHeld(bb.ctx, &outboxdriver.EventClaimBatchParams{RelayID: "bench", Limit: 100})
		if err != nil {
			b.Fatal(err)
		}
		rows := batch.Rows()
		if len(rows) == 0 {
			_ = batch.Abort()
			b.StopTimer()
			fill(10000)
			b.StartTimer()
			continue
		}
		claimed += len(rows)
		if err := batch.Finish(bb.ctx, ids(rows), nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(claimed)/b.Elapsed().Seconds(), "events/s")
}
