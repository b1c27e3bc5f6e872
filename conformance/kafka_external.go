package conformance

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	bkafka "github.com/outboxkit/outboxkit/brokers/kafka"
	"github.com/outboxkit/outboxkit/framework/outboxtest/tcpproxy"
)

// kafkaProxyEnv is set by the parent test to the address of the proxy in
// front of an external cluster's only broker, so that the subprocess relay
// of the SIGKILL test dials through it too: <prefix><id>=host:port.
const kafkaProxyEnv = "OUTBOXKIT_CONFORMANCE_KAFKA_PROXY_"

// KafkaAt is Kafka for the external cluster at url:
// kafka://host:9092[,host:9092...] (query parameters are ignored; no TLS or
// SASL). It names no Services: the caller checks that the cluster is
// reachable.
//
// Each test creates a topic of its own with kafkaPartitions partitions
// (replication factor: the cluster's default) and deletes it at the end.
// The publisher is the module's (sarama through watermill-kafka); the
// reader is an independent client, franz-go, reading every partition from
// the start.
//
// Kafka clients connect to the addresses the cluster advertises, not to the
// bootstrap address, so a proxy in front of the bootstrap address would be
// bypassed. When the cluster has a single broker, the test starts a
// tcpproxy in front of its advertised listener and every client of the test
// (publishers, the reader, the subprocess relay) dials it instead: the
// broker-cut tests cut that proxy. With several brokers one proxy cannot cut
// the cluster: those tests are skipped, saying so.
func KafkaAt(raw string) Broker {
	var seeds []string
	if u, err := url.Parse(raw); err == nil {
		for _, h := range strings.Split(u.Host, ",") {
			if h == "" {
				continue
			}
			if _, _, err := net.SplitHostPort(h); err != nil {
				h = net.JoinHostPort(h, "9092")
			}
			seeds = append(seeds, h)
		}
	}
	k := Kafka()
	k.Open = func(t testing.TB, id string) BrokerInstance { return openExternalKafka(t, seeds, id) }
	return k
}

// externalKafka is one test's topic on an external cluster.
type externalKafka struct {
	seeds []string
	topic string
	via   string // dial every broker through this address; empty dials them directly
}

// proxiedKafka is an externalKafka behind the test's own proxy (Proxied).
type proxiedKafka struct {
	*externalKafka
	proxy *tcpproxy.Proxy
}

// Proxy implements Proxied.
func (k *proxiedKafka) Proxy() *tcpproxy.Proxy { return k.proxy }

// unproxiedKafka is an externalKafka the broker-cut tests cannot cut.
type unproxiedKafka struct {
	*externalKafka
	why string
}

// WhyNotProxied implements notProxied.
func (k *unproxiedKafka) WhyNotProxied() string { return k.why }

func openExternalKafka(t testing.TB, seeds []string, id string) BrokerInstance {
	t.Helper()
	if len(seeds) == 0 {
		t.Fatal("Kafka: the broker URL names no host (want kafka://host:9092)")
	}
	k := &externalKafka{seeds: seeds, topic: strings.ReplaceAll(id, "_", "-")}
	env := kafkaProxyEnv + id
	if childMode() {
		// The subprocess relay: the parent created the topic (and the proxy).
		k.via = os.Getenv(env)
		return k
	}
	admin, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.RequestTimeoutOverhead(10*time.Second))
	if err != nil {
		t.Fatalf("Kafka admin client: %v", err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	brokers, err := kafkaBrokers(ctx, admin)
	if err != nil {
		t.Fatalf("Kafka at %s: %v", strings.Join(seeds, ","), err)
	}
	if err := createKafkaTopic(ctx, admin, k.topic, kafkaPartitions); err != nil {
		t.Fatalf("create topic %s: %v", k.topic, err)
	}
	t.Cleanup(func() {
		cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
		if err != nil {
			return
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req := kmsg.NewPtrDeleteTopicsRequest()
		req.TimeoutMillis = 10000
		dt := kmsg.NewDeleteTopicsRequestTopic()
		dt.Topic = kmsg.StringPtr(k.topic)
		req.Topics = append(req.Topics, dt)
		req.TopicNames = []string{k.topic} // for brokers answering DeleteTopics v5 and below
		_, _ = req.RequestWith(ctx, cl)
	})
	if len(brokers) != 1 {
		return &unproxiedKafka{externalKafka: k, why: fmt.Sprintf(
			"Kafka at %s advertises %d brokers (%s): one proxy in front of one advertised listener cannot cut the cluster",
			strings.Join(seeds, ","), len(brokers), strings.Join(brokers, ", "))}
	}
	p, err := tcpproxy.Start(brokers[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	k.via = p.Addr()
	if err := os.Setenv(env, k.via); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Unsetenv(env) })
	return &proxiedKafka{externalKafka: k, proxy: p}
}

// kafkaBrokers returns the host:port every broker of the cluster advertises.
func kafkaBrokers(ctx context.Context, cl *kgo.Client) ([]string, error) {
	req := kmsg.NewPtrMetadataRequest()
	req.Topics = []kmsg.MetadataRequestTopic{} // none: the brokers only
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, b := range resp.Brokers {
		out = append(out, net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port))))
	}
	if len(out) == 0 {
		return nil, errors.New("the cluster advertises no broker")
	}
	return out, nil
}

// createKafkaTopic creates topic with partitions partitions and the
// cluster's default replication factor.
func createKafkaTopic(ctx context.Context, cl *kgo.Client, topic string, partitions int32) error {
	req := kmsg.NewPtrCreateTopicsRequest()
	req.TimeoutMillis = 20000
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic = topic
	rt.NumPartitions = partitions
	rt.ReplicationFactor = -1
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return err
	}
	for _, rt := range resp.Topics {
		if err := kerr.ErrorForCode(rt.ErrorCode); err != nil {
			if rt.ErrorMessage != nil {
				return fmt.Errorf("%w: %s", err, *rt.ErrorMessage)
			}
			return err
		}
	}
	return nil
}

// dial dials addr, or k.via instead when the test routes the cluster
// through its proxy (a single broker: every advertised address is it).
func (k *externalKafka) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if k.via != "" {
		addr = k.via
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	return d.DialContext(ctx, network, addr)
}

// saramaDialer gives sarama (Net.Proxy.Dialer) the instance's dial.
type saramaDialer struct{ k *externalKafka }

// Dial implements golang.org/x/net/proxy.Dialer.
func (d saramaDialer) Dial(network, addr string) (net.Conn, error) {
	return d.k.dial(context.Background(), network, addr)
}

func (k *externalKafka) Topic() string { return k.topic }

// NewPublisher returns the module's publisher. addr is ignored: with a
// proxy, every connection already goes through it (see KafkaAt).
func (k *externalKafka) NewPublisher(t testing.TB, addr string) message.Publisher {
	t.Helper()
	pub, err := bkafka.NewPublisher(bkafka.Config{
		Brokers: k.seeds,
		Sarama: func(c *sarama.Config) {
			c.Net.DialTimeout = 5 * time.Second
			c.Net.ReadTimeout = 10 * time.Second
			c.Net.WriteTimeout = 10 * time.Second
			c.Metadata.Retry.Backoff = 100 * time.Millisecond
			c.Producer.Retry.Backoff = 100 * time.Millisecond
			if k.via != "" {
				c.Net.Proxy.Enable = true
				c.Net.Proxy.Dialer = saramaDialer{k}
			}
		},
	})
	if err != nil {
		t.Fatalf("Kafka publisher: %v", err)
	}
	t.Cleanup(func() { pub.Close() })
	return pub
}

func (k *externalKafka) Consume(t testing.TB) <-chan Received {
	t.Helper()
	return consumeKafka(t, k.topic,
		kgo.SeedBrokers(k.seeds...),
		kgo.Dialer(k.dial),
	)
}
