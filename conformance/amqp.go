package conformance

import (
	"testing"
	"time"

	wmamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"

	bamqp "github.com/outboxkit/outboxkit/brokers/amqp"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

// AMQP returns the broker side of a cell for brokers/amqp (publisher
// confirms, mandatory publishing, persistent messages, message-id = event
// id) against RabbitMQ at outboxtest.AMQPURL (OUTBOX_TEST_AMQP_URL). Each
// test gets its own durable topic exchange and queue, both named after the
// test's id (the queue is the module's QueueName(DefaultConsumerGroup, id)),
// deleted when the test ends.
//
// The reader is a plain amqp091 consumer on that queue (one consumer, so
// queue order is publish order) and reads the AMQP message-id property
// into Received.DedupID. RabbitMQ does not deduplicate by message-id.
func AMQP() Broker {
	b := AMQPAt(outboxtest.AMQPURL())
	b.Services = []string{outboxtest.AMQP}
	b.Addr = outboxtest.ServiceAddr(outboxtest.AMQP)
	return b
}

// AMQPAt is AMQP for the RabbitMQ server at url
// (amqp://user:password@host:5672/vhost; query parameters are ignored). It
// names no Services: the caller checks that the server is reachable.
func AMQPAt(url string) Broker {
	url, addr := baseURL(url, "5672")
	return Broker{
		Name: "amqp",
		Features: Features{
			NativeDedup: false,
			DedupSlot:   "AMQP message-id property",
			PerKeyOrder: true,
			Networked:   true,
		},
		Addr: addr,
		Open: func(t testing.TB, id string) BrokerInstance { return openAMQP(t, url, id) },
	}
}

type amqpInstance struct {
	url   string
	id    string // exchange and topic (routing key)
	queue string
}

func openAMQP(t testing.TB, url, id string) BrokerInstance {
	t.Helper()
	a := &amqpInstance{url: url, id: id, queue: bamqp.QueueName(bamqp.DefaultConsumerGroup, id)}
	if childMode() {
		// The subprocess relay: the parent declared everything and deletes it.
		return a
	}
	conn := a.dial(t)
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	// The same topology the module's publisher declares (durable topic
	// exchange, durable queue bound with the topic as routing key), declared
	// here first so that the reader sees everything from the first publish.
	if err := ch.ExchangeDeclare(id, "topic", true, false, false, false, nil); err != nil {
		t.Fatalf("declare exchange %s: %v", id, err)
	}
	if _, err := ch.QueueDeclare(a.queue, true, false, false, false, nil); err != nil {
		t.Fatalf("declare queue %s: %v", a.queue, err)
	}
	if err := ch.QueueBind(a.queue, id, id, false, nil); err != nil {
		t.Fatalf("bind queue %s: %v", a.queue, err)
	}
	t.Cleanup(func() {
		conn := a.dial(t)
		ch, err := conn.Channel()
		if err != nil {
			t.Logf("AMQP cleanup: %v", err)
			return
		}
		defer ch.Close()
		_, _ = ch.QueueDelete(a.queue, false, false, false)
		_ = ch.ExchangeDelete(id, false, false)
	})
	return a
}

func (a *amqpInstance) dial(t testing.TB) *amqp.Connection {
	t.Helper()
	conn, err := amqp.DialConfig(a.url, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		t.Fatalf("connect to RabbitMQ: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func (a *amqpInstance) Topic() string { return a.id }

func (a *amqpInstance) NewPublisher(t testing.TB, addr string) message.Publisher {
	t.Helper()
	pub, err := bamqp.NewPublisher(bamqp.Config{
		URL: a.url, Addr: addr, Exchange: a.id, PublishTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatalf("AMQP publisher: %v", err)
	}
	t.Cleanup(func() { pub.Close() })
	return pub
}

func (a *amqpInstance) Consume(t testing.TB) <-chan Received {
	t.Helper()
	conn := a.dial(t)
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	deliveries, err := ch.Consume(a.queue, "", true, true, false, false, nil)
	if err != nil {
		t.Fatalf("consume %s: %v", a.queue, err)
	}
	out := make(chan Received, 4096)
	go func() {
		var unm wmamqp.DefaultMarshaler
		for d := range deliveries {
			msg, err := unm.Unmarshal(d)
			if err != nil {
				continue // counted as missing by the test that waits for it
			}
			out <- Received{UUID: msg.UUID, DedupID: d.MessageId, Payload: msg.Payload, Metadata: msg.Metadata}
		}
	}()
	return out
}
