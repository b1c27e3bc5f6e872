package conformance_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/outboxkit/outboxkit/conformance"
)

// kafkaExternalEnv carries the stand-in cluster's address to the
// re-executed subprocess relays, which must publish to the parent's cluster.
const kafkaExternalEnv = "OUTBOXKIT_TEST_KAFKA_EXTERNAL_ADDR"

// TestKafkaExternal runs the suite's external-Kafka side (KafkaAt: what
// `outbox conformance --broker-url kafka://host:9092` uses) against kfake
// listening on a TCP port, a stand-in for a real single-broker cluster: the
// suite creates a topic of several partitions per test, reads it with
// franz-go, and cuts the cluster through the proxy it puts in front of the
// advertised listener. The database side is SQLite: no service is needed.
func TestKafkaExternal(t *testing.T) {
	addr := os.Getenv(kafkaExternalEnv)
	if addr == "" {
		c, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		addr = c.ListenAddrs()[0]
		os.Setenv(kafkaExternalEnv, addr)
		t.Cleanup(func() { os.Unsetenv(kafkaExternalEnv) })
	}
	const name = "sqlite_kafka_external"
	conformance.Run(t, conformance.Harness{
		Name:     name,
		Database: conformance.SQLite(filepath.Join(os.Getenv(sqliteDirEnv), name+".db")),
		Broker:   conformance.KafkaAt("kafka://" + addr),
		Light:    true,
	})
}
