package conformance_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/outboxkit/outboxkit/framework/outboxbroker"
)

// TestKafkaHealth: the kafka:// health check (brokers/kafka/health.go) asks
// the cluster for metadata: it succeeds while the cluster answers and fails
// within its deadline once the cluster is gone (the check used to be a TCP
// connect only).
func TestKafkaHealth(t *testing.T) {
	t.Parallel()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "health"))
	if err != nil {
		t.Fatal(err)
	}
	url := "kafka://" + c.ListenAddrs()[0]
	b, err := outboxbroker.Open(context.Background(), url, outboxbroker.Options{})
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	defer b.Close()
	check := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		return outboxbroker.CheckHealth(ctx, url, outboxbroker.Options{}, b)
	}
	if err := check(); err != nil {
		t.Fatalf("healthy cluster: %v", err)
	}
	c.Close()
	if err := check(); err == nil {
		t.Fatal("CheckHealth succeeded with the cluster closed")
	}
}
