package main

// Every broker module registers its URL schemes with outboxbroker.
import (
	_ "github.com/outboxkit/outboxkit/brokers/amqp"
	_ "github.com/outboxkit/outboxkit/brokers/kafka"
	_ "github.com/outboxkit/outboxkit/brokers/memory"
	_ "github.com/outboxkit/outboxkit/brokers/nats"
	_ "github.com/outboxkit/outboxkit/brokers/redisstream"
)
