package memory_test

import (
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"

	"github.com/outboxkit/outboxkit/brokers/memory"
)

// TestUniversal runs Watermill's universal Pub/Sub suite against the memory
// broker with the features it promises (see README.md): no order (each
// message is handed over from its own goroutine), no consumer groups, one
// process-local instance per New.
func TestUniversal(t *testing.T) {
	t.Parallel()
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups:        false,
		ExactlyOnceDelivery:   true,
		GuaranteedOrder:       false,
		Persistent:            false,
		RequireSingleInstance: true,
	}, func(t *testing.T) (message.Publisher, message.Subscriber) {
		ps, err := memory.New(memory.Config{})
		if err != nil {
			t.Fatal(err)
		}
		return ps, ps
	}, nil)
}
