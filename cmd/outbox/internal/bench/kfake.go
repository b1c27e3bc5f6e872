//go:build kfake

package bench

import (
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kfake"
)

// startKfake starts an in-process Kafka (franz-go's kfake) for kfake://.
// Only binaries built with -tags kfake have it (make bench builds one): the
// operator binary links no test fake.
func startKfake() (addr string, stop func(), err error) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(10))
	if err != nil {
		return "", nil, fmt.Errorf("start kfake: %w", err)
	}
	addrs := c.ListenAddrs()
	if len(addrs) == 0 {
		c.Close()
		return "", nil, errors.New("kfake: no listen address")
	}
	return addrs[0], c.Close, nil
}
