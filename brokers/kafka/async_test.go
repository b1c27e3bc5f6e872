package kafka_test

import (
	"sync"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outboxkit/brokers/kafka"
	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxbroker/outboxbrokertest"
)

// asyncHarness runs the shared AsyncPublisher suite on a kfake cluster per
// test (3 partitions); the producer refuses a record larger than
// Producer.MaxMessageBytes (1 MB).
func asyncHarness() outboxbrokertest.AsyncHarness {
	var mu sync.Mutex
	clusters := map[string]*bundle{} // topic -> its cluster
	return outboxbrokertest.AsyncHarness{
		New: func(t testing.TB) (outbox.AsyncPublisher, string) {
			b := setup(t)
			mu.Lock()
			clusters[b.topic] = b
			mu.Unlock()
			pub, err := kafka.NewPublisher(b.cfg)
			if err != nil {
				t.Fatal(err)
			}
			return pub, b.topic
		},
		Read: func(t testing.TB, topic string, n int) []string {
			mu.Lock()
			b := clusters[topic]
			mu.Unlock()
			recs := readAll(t, b.cluster.ListenAddrs(), topic, n)
			ids := make([]string, len(recs))
			for i, r := range recs {
				ids[i], _ = header(r, outbox.MetadataEventID)
			}
			return ids
		},
		Refused: func(t testing.TB, topic string) (string, *message.Message) {
			return topic, outboxbrokertest.Message(99, "k", 2<<20)
		},
		ErrClosed: kafka.ErrPublisherClosed,
	}
}

func TestPublishAsync(t *testing.T) {
	t.Parallel()
	outboxbrokertest.RunAsyncPublisher(t, asyncHarness())
}

// BenchmarkPublish compares Publish with PublishAsync, against the
// in-process kfake cluster (it shares the CPU with the client):
//
//	go test -run '^$' -bench Publish -benchtime 20000x ./brokers/kafka
func BenchmarkPublish(b *testing.B) { outboxbrokertest.BenchmarkPublish(b, asyncHarness()) }
