package conformance

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	bkafka "github.com/outboxkit/outboxkit/brokers/kafka"
	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxtest/tcpproxy"
)

// kafkaAddrEnv is set by the parent test to the address of the test's
// in-process cluster, so that the subprocess relay of the SIGKILL test
// publishes to it: <prefix><id>=host:port.
const kafkaAddrEnv = "OUTBOXKIT_CONFORMANCE_KAFKA_"

// kafkaPartitions is the partition count of every test topic: more than one,
// so that per-key order depends on the key picking the partition.
const kafkaPartitions = 3

// Kafka returns the broker side of a cell for brokers/kafka (sarama through
// watermill-kafka, acks=all, idempotent producer, event key = record key)
// against an in-process franz-go kfake cluster started per test: no service
// is needed. Production uses a real Kafka; kfake is the accepted stand-in.
// KafkaAt is the same side for an external cluster.
//
// Kafka clients connect to the addresses the cluster advertises, not to the
// bootstrap address they were given, so a proxy in front of the bootstrap
// address would be bypassed. Each test's cluster therefore listens behind
// its own tcpproxy and advertises the proxy's address (kfake.ListenFn with
// a listener reporting that address); every client goes through it and the
// broker-cut tests cut it (the instance implements Proxied). The reader is
// franz-go (an independent client), reading every partition from the start.
//
// Kafka has no broker-side dedup by event id; the id travels in the record
// header outbox_event_id (Features.DedupSlot). Order is per partition, and
// the key picks the partition: per-key order holds.
func Kafka() Broker {
	return Broker{
		Name: "kafka",
		Features: Features{
			NativeDedup: false,
			DedupSlot:   "record header outbox_event_id",
			PerKeyOrder: true,
			Networked:   true,
		},
		Open: openKafka,
	}
}

type kafkaInstance struct {
	topic string
	addr  string          // advertised: the proxy's address
	proxy *tcpproxy.Proxy // nil in the subprocess relay
}

// advertisedListener is a net.Listener whose Addr is another address (the
// proxy in front of it): kfake advertises Addr in its metadata.
type advertisedListener struct {
	net.Listener
	addr net.Addr
}

func (l advertisedListener) Addr() net.Addr { return l.addr }

func openKafka(t testing.TB, id string) BrokerInstance {
	t.Helper()
	topic := strings.ReplaceAll(id, "_", "-")
	env := kafkaAddrEnv + id
	if addr := os.Getenv(env); addr != "" {
		// The subprocess relay: the parent's cluster serves this test.
		return &kafkaInstance{topic: topic, addr: addr}
	}
	k := &kafkaInstance{topic: topic}
	listen := func(network, address string) (net.Listener, error) {
		ln, err := net.Listen(network, address)
		if err != nil {
			return nil, err
		}
		p, err := tcpproxy.Start(ln.Addr().String())
		if err != nil {
			ln.Close()
			return nil, err
		}
		pa, err := net.ResolveTCPAddr("tcp", p.Addr())
		if err != nil {
			ln.Close()
			p.Close()
			return nil, err
		}
		k.proxy = p
		return advertisedListener{Listener: ln, addr: pa}, nil
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.ListenFn(listen), kfake.SeedTopics(kafkaPartitions, topic))
	if err != nil {
		t.Fatalf("kfake cluster: %v", err)
	}
	// Cleanups run last-in first-out: the cluster closes before its proxy.
	t.Cleanup(func() { k.proxy.Close() })
	t.Cleanup(c.Close)
	k.addr = k.proxy.Addr()
	if err := os.Setenv(env, k.addr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Unsetenv(env) })
	return k
}

func (k *kafkaInstance) Topic() string { return k.topic }

// Proxy implements Proxied.
func (k *kafkaInstance) Proxy() *tcpproxy.Proxy { return k.proxy }

// NewPublisher returns the module's publisher. addr is ignored: every
// connection already goes through the instance's proxy (see Kafka).
func (k *kafkaInstance) NewPublisher(t testing.TB, addr string) message.Publisher {
	t.Helper()
	pub, err := bkafka.NewPublisher(bkafka.Config{
		Brokers: []string{k.addr},
		Sarama: func(c *sarama.Config) {
			// Quick reconnects and failures for the outage tests; the relay's
			// PublishTimeout bounds an attempt anyway.
			c.Net.DialTimeout = 2 * time.Second
			c.Net.ReadTimeout = 5 * time.Second
			c.Net.WriteTimeout = 5 * time.Second
			c.Metadata.Retry.Backoff = 100 * time.Millisecond
			c.Producer.Retry.Backoff = 100 * time.Millisecond
		},
	})
	if err != nil {
		t.Fatalf("Kafka publisher: %v", err)
	}
	t.Cleanup(func() { pub.Close() })
	return pub
}

func (k *kafkaInstance) Consume(t testing.TB) <-chan Received {
	t.Helper()
	return consumeKafka(t, k.topic, kgo.SeedBrokers(k.addr))
}

// consumeKafka reads every partition of topic from the start with franz-go
// (a client independent of the publisher's sarama), with opts naming the
// cluster, until the test ends.
func consumeKafka(t testing.TB, topic string, opts ...kgo.Opt) <-chan Received {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.RetryBackoffFn(func(int) time.Duration { return 100 * time.Millisecond }),
	}, opts...)...)
	if err != nil {
		t.Fatalf("Kafka reader: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan Received, 4096)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var unm bkafka.Marshaler
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			fs.EachRecord(func(r *kgo.Record) {
				msg, err := unm.Unmarshal(toSarama(r))
				if err != nil {
					t.Errorf("unreadable record on %s: %v", topic, err)
					return
				}
				rec := Received{UUID: msg.UUID, Payload: msg.Payload, Metadata: msg.Metadata}
				for _, h := range r.Headers {
					if h.Key == outbox.MetadataEventID {
						rec.DedupID = string(h.Value)
					}
				}
				select {
				case out <- rec:
				case <-ctx.Done():
				}
			})
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		cl.Close()
	})
	return out
}

// toSarama converts a franz-go record to the sarama form the module's
// Unmarshal takes.
func toSarama(r *kgo.Record) *sarama.ConsumerMessage {
	cm := &sarama.ConsumerMessage{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value, Timestamp: r.Timestamp}
	for _, h := range r.Headers {
		cm.Headers = append(cm.Headers, &sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value})
	}
	return cm
}
