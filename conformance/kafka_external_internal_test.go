package conformance

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

// TestKafkaAtTopicsAndProxy: KafkaAt's instance creates its topic with
// kafkaPartitions partitions; on a single-broker cluster it is Proxied, on a
// cluster of several brokers it says why the cut tests cannot run.
func TestKafkaAtTopicsAndProxy(t *testing.T) {
	for _, tc := range []struct {
		brokers int
		proxied bool
	}{{1, true}, {2, false}} {
		c, err := kfake.NewCluster(kfake.NumBrokers(tc.brokers))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		inst := KafkaAt("kafka://"+c.ListenAddrs()[0]).Open(t, outboxtest.UniqueName("conf_kx"))
		if _, ok := inst.(Proxied); ok != tc.proxied {
			t.Errorf("%d broker(s): Proxied %v, want %v", tc.brokers, ok, tc.proxied)
		}
		if !tc.proxied {
			np, ok := inst.(notProxied)
			if !ok || !strings.Contains(np.WhyNotProxied(), "advertises 2 brokers") {
				t.Errorf("%d brokers: no reason to skip the cut tests (%v)", tc.brokers, ok)
			}
		}
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		req := kmsg.NewPtrMetadataRequest()
		mt := kmsg.NewMetadataRequestTopic()
		mt.Topic = kmsg.StringPtr(inst.Topic())
		req.Topics = append(req.Topics, mt)
		resp, err := req.RequestWith(ctx, cl)
		cancel()
		cl.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != kafkaPartitions {
			t.Errorf("%d broker(s): topic %s: metadata %+v, want %d partitions", tc.brokers, inst.Topic(), resp.Topics, kafkaPartitions)
		}
	}
}
