package kafka_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outboxkit/outboxkit/brokers/kafka"
	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxbroker"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

type bundle struct {
	cluster *kfake.Cluster
	cfg     kafka.Config
	topic   string
}

// setup starts an in-process kfake cluster with the test's topic (3
// partitions).
func setup(t testing.TB, opts ...kfake.Opt) *bundle {
	t.Helper()
	topic := outboxtest.UniqueName("kt")
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(3, topic)}, opts...)...)
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return &bundle{cluster: c, topic: topic, cfg: kafka.Config{Brokers: c.ListenAddrs(), ConsumerGroup: topic + "-g"}}
}

func eventMessage(i int, key string) *message.Message {
	id := fmt.Sprintf("00000000-0000-7000-8000-%012d", i)
	m := message.NewMessage(id, []byte(fmt.Sprintf("{\"n\":%d,\"raw\":\"\x00\xff\"}", i)))
	m.Metadata.Set(outbox.MetadataEventID, id)
	m.Metadata.Set(outbox.MetadataEventType, "invoice.issued")
	m.Metadata.Set(outbox.MetadataKey, key)
	m.Metadata.Set(outbox.MetadataCreatedAt, "2024-01-02T03:04:05.000000006Z")
	m.Metadata.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	return m
}

// readAll consumes n records of topic with franz-go (an independent client).
func readAll(t testing.TB, addrs []string, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %d of %d records: %v", len(recs), n, err)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("fetch: %v", err) })
		recs = append(recs, fs.Records()...)
	}
	return recs
}

func header(r *kgo.Record, k string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == k {
			return string(h.Value), true
		}
	}
	return "", false
}

func TestInteropFranzGo(t *testing.T) {
	t.Parallel()
	b := setup(t)
	pub, err := kafka.NewPublisher(b.cfg)
	if err != nil {
		t.Fatalf("NewPublisher: %v", err)
	}
	defer pub.Close()

	const n = 30
	sent := map[string]*message.Message{}
	for i := range n {
		m := eventMessage(i, fmt.Sprintf("key-%d", i%4))
		sent[m.UUID] = m
		if err := pub.Publish(b.topic, m); err != nil {
			t.Fatalf("Publish %d: %v", i, err)
		}
	}

	recs := readAll(t, b.cluster.ListenAddrs(), b.topic, n)
	keyPartition := map[string]int32{}
	lastIndex := map[string]int{}
	for _, r := range recs {
		id, _ := header(r, outbox.MetadataEventID)
		want, ok := sent[id]
		if !ok {
			t.Fatalf("record with unknown %s %q", outbox.MetadataEventID, id)
		}
		if !bytes.Equal(r.Value, want.Payload) {
			t.Fatalf("%s: value %q, want %q", id, r.Value, want.Payload)
		}
		if string(r.Key) != want.Metadata.Get(outbox.MetadataKey) {
			t.Fatalf("%s: key %q, want %q", id, r.Key, want.Metadata.Get(outbox.MetadataKey))
		}
		if u, _ := header(r, "_watermill_message_uuid"); u != want.UUID {
			t.Fatalf("%s: uuid header %q", id, u)
		}
		for k, v := range want.Metadata {
			if got, _ := header(r, k); got != v {
				t.Fatalf("%s: header %s = %q, want %q", id, k, got, v)
			}
		}
		key := string(r.Key)
		if p, seen := keyPartition[key]; seen && p != r.Partition {
			t.Fatalf("key %s on partitions %d and %d", key, p, r.Partition)
		}
		keyPartition[key] = r.Partition
		var idx int
		fmt.Sscanf(id[len(id)-12:], "%d", &idx)
		if prev, seen := lastIndex[key]; seen && idx < prev {
			t.Fatalf("key %s: event %d after %d (per-key order broken)", key, idx, prev)
		}
		lastIndex[key] = idx
		delete(sent, id)
	}
	if len(sent) != 0 {
		t.Fatalf("%d events never read", len(sent))
	}
}

func TestIdempotentProducerAgainstKfake(t *testing.T) {
	t.Parallel()
	b := setup(t)
	pc := b.cfg.SaramaProducerConfig()
	if !pc.Producer.Idempotent || pc.Net.MaxOpenRequests != 1 {
		t.Fatalf("idempotence not configured: %v %d", pc.Producer.Idempotent, pc.Net.MaxOpenRequests)
	}
	// sarama's idempotent producer needs a producer id from InitProducerID;
	// kfake serves it, so the publish must succeed with a real producer id.
	client, err := sarama.NewClient(b.cfg.Brokers, pc)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	defer client.Close()
	prod, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		t.Fatalf("NewSyncProducerFromClient: %v", err)
	}
	defer prod.Close()
	m, err := kafka.Marshaler{}.Marshal(b.topic, eventMessage(1, "k"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := prod.SendMessage(m); err != nil {
		t.Fatalf("idempotent SendMessage: %v", err)
	}
	recs := readAll(t, b.cluster.ListenAddrs(), b.topic, 1)
	if recs[0].ProducerID < 0 {
		t.Fatalf("record has producer id %d: not written by an idempotent producer", recs[0].ProducerID)
	}
	t.Logf("record producer id %d epoch %d", recs[0].ProducerID, recs[0].ProducerEpoch)
}

func TestSubscriber(t *testing.T) {
	t.Parallel()
	b := setup(t)
	pub, err := kafka.NewPublisher(b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	const n = 10
	for i := range n {
		if err := pub.Publish(b.topic, eventMessage(i, "only-key")); err != nil {
			t.Fatal(err)
		}
	}
	sub, err := kafka.NewSubscriber(b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := sub.Subscribe(ctx, b.topic)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		select {
		case m := <-ch:
			want := eventMessage(i, "only-key")
			if m.UUID != want.UUID || !bytes.Equal(m.Payload, want.Payload) || m.Metadata.Get(outbox.MetadataKey) != "only-key" {
				t.Fatalf("message %d: %s %q %v (one key: publish order expected)", i, m.UUID, m.Payload, m.Metadata)
			}
			m.Ack()
		case <-time.After(60 * time.Second):
			t.Fatalf("received %d of %d (the group starts at the oldest offset)", i, n)
		}
	}
}

func TestEmptyKeyIsNil(t *testing.T) {
	t.Parallel()
	m := eventMessage(1, "")
	pm, err := kafka.Marshaler{}.Marshal("t", m)
	if err != nil {
		t.Fatal(err)
	}
	if pm.Key != nil {
		t.Fatalf("key %v, want nil for an event without key", pm.Key)
	}
	pm, _ = kafka.Marshaler{}.Marshal("t", eventMessage(1, "abc"))
	if k, _ := pm.Key.Encode(); string(k) != "abc" {
		t.Fatalf("key %q", k)
	}
}

func TestBuiltConfig(t *testing.T) {
	t.Parallel()
	cfg := kafka.Config{Brokers: []string{"127.0.0.1:9092"}}
	pc := cfg.SaramaProducerConfig()
	if pc.Producer.RequiredAcks != sarama.WaitForAll {
		t.Errorf("RequiredAcks %v, want WaitForAll", pc.Producer.RequiredAcks)
	}
	if !pc.Producer.Idempotent || pc.Net.MaxOpenRequests != 1 || !pc.Producer.Return.Successes {
		t.Errorf("idempotent %v max open %d successes %v", pc.Producer.Idempotent, pc.Net.MaxOpenRequests, pc.Producer.Return.Successes)
	}
	if err := pc.Validate(); err != nil {
		t.Errorf("sarama rejects the producer config: %v", err)
	}
	cc := cfg.SaramaConsumerConfig()
	if cc.Consumer.Offsets.Initial != sarama.OffsetOldest {
		t.Errorf("consumer starts at %d, want OffsetOldest", cc.Consumer.Offsets.Initial)
	}
	if sc := cfg.SubscriberConfig(); sc.ConsumerGroup != kafka.DefaultConsumerGroup {
		t.Errorf("consumer group %q", sc.ConsumerGroup)
	}
	off := kafka.Config{Brokers: cfg.Brokers, DisableIdempotence: true}.SaramaProducerConfig()
	if off.Producer.Idempotent || off.Producer.RequiredAcks != sarama.WaitForAll {
		t.Errorf("DisableIdempotence: idempotent %v acks %v", off.Producer.Idempotent, off.Producer.RequiredAcks)
	}
	if _, err := kafka.NewPublisher(kafka.Config{}); err == nil || !strings.Contains(err.Error(), "Brokers") {
		t.Errorf("empty Brokers: %v", err)
	}
}

func TestOpenURLWithSASL(t *testing.T) {
	t.Parallel()
	b := setup(t, kfake.EnableSASL(), kfake.Superuser("PLAIN", "relay", "s3cret"))
	ctx := context.Background()
	addr := b.cluster.ListenAddrs()[0]

	br, err := outboxbroker.Open(ctx, "kafka://relay:s3cret@"+addr+"?sasl_mechanism=PLAIN&group=g1", outboxbroker.Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer br.Close()
	if err := br.Publisher.Publish(b.topic, eventMessage(1, "k")); err != nil {
		t.Fatalf("Publish with SASL: %v", err)
	}
	if br.Features.NativeDedup || !br.Features.PerKeyOrder {
		t.Fatalf("features %+v", br.Features)
	}

	t.Run("WrongPassword", func(t *testing.T) {
		_, err := kafka.NewPublisher(kafka.Config{Brokers: []string{addr}, SASL: kafka.SASL{Mechanism: "PLAIN", User: "relay", Password: "wrong"},
			Sarama: func(c *sarama.Config) { c.Metadata.Retry.Max = 0 }})
		if err == nil {
			t.Fatal("publisher with a wrong SASL password connected")
		}
	})

	t.Run("BadParams", func(t *testing.T) {
		for q, param := range map[string]string{
			"idempotent=perhaps": "idempotent",
			"sasl_mechanism=MD5": "sasl_mechanism",
			"version=banana":     "version",
			"acks=1":             "acks",
		} {
			_, err := outboxbroker.Open(ctx, "kafka://u:s3cret@"+addr+"?"+q, outboxbroker.Options{})
			var pe *outboxbroker.ParamError
			if !errors.As(err, &pe) || pe.Param != param {
				t.Errorf("%s: err = %v, want ParamError naming %q", q, err, param)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Errorf("%s: error leaks the password", q)
			}
		}
	})
}
