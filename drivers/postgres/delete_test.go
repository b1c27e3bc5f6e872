package postgres_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outboxkit/drivers/postgres"
	"github.com/outboxkit/outboxkit/framework/outbox"
)

// orderPublisher records the ids it acknowledged per key, and refuses
// events of the topic "refused".
type orderPublisher struct {
	mu    sync.Mutex
	byKey map[string][]string
}

func (p *orderPublisher) Publish(topic string, msgs ...*message.Message) error {
	if topic == "refused" {
		return errors.New("refused by the test broker")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range msgs {
		k := m.Metadata.Get(outbox.MetadataKey)
		p.byKey[k] = append(p.byKey[k], m.UUID)
	}
	return nil
}

func (p *orderPublisher) Close() error { return nil }

// TestDeleteDelivered: a relay on a DeleteDelivered driver deletes what the
// broker acknowledged, in per-key order, and keeps what failed.
func TestDeleteDelivered(t *testing.T) {
	t.Parallel()
	b := setup(t)
	drv, err := postgres.New(b.db, postgres.Config{Table: b.table, DeleteDelivered: true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{}
	var events []*outbox.Event
	for i := range 300 {
		e := &outbox.Event{ID: fmt.Sprintf("0194a1c2-0000-7000-8000-%012d", i+1), Type: "t", Topic: "ok", Key: fmt.Sprint(i % 30), Payload: []byte("{}")}
		events = append(events, e)
		want[e.Key] = append(want[e.Key], e.ID)
	}
	events = append(events, &outbox.Event{Type: "t", Topic: "refused", Key: "r", Payload: []byte("{}")})
	b.insert(t, events...)

	pub := &orderPublisher{byKey: map[string][]string{}}
	stop := runRelay(t, &bundle{db: b.db, table: b.table, drv: drv, ob: b.ob}, pub, outbox.RelayConfig{BatchSize: 50, MaxAttempts: 1})
	eventually(t, "the backlog to drain", func() bool { s := b.stats(t); return s.Pending == 0 && s.Dead == 1 })
	stop()

	pub.mu.Lock()
	for k, ids := range want {
		if !slices.Equal(pub.byKey[k], ids) {
			t.Fatalf("key %s published %v, want %v", k, pub.byKey[k], ids)
		}
	}
	pub.mu.Unlock()
	var rows int
	if err := b.db.QueryRow(`SELECT count(*) FROM "` + b.table + `"`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if s := b.stats(t); rows != 1 || s.DeliveredLastMinute != 0 {
		t.Fatalf("%d rows left (want the dead one only), stats %+v", rows, s)
	}

}
