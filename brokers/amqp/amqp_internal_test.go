package amqp

import (
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// TestTakeReturnAfterChannelClosed: amqp091 closes the returns channel with
// the AMQP channel (a broker or network cut); takeReturn must still find
// what was queued before, and return instead of reading the closed channel
// forever.
func TestTakeReturnAfterChannelClosed(t *testing.T) {
	t.Parallel()
	returns := make(chan amqp.Return, 2)
	returns <- amqp.Return{MessageId: "a"}
	close(returns)
	a := &asyncChannel{returns: returns, returned: map[string]amqp.Return{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, ok := a.takeReturn("a"); !ok {
			t.Error("the return queued before the close was lost")
		}
		if _, ok := a.takeReturn("b"); ok {
			t.Error("a message never returned was reported returned")
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("takeReturn keeps reading a closed returns channel")
	}
}
