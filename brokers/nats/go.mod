module github.com/outboxkit/outboxkit/brokers/nats

go 1.26.0
