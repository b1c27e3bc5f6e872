module github.com/outboxkit/outboxkit/brokers/amqp

go 1.26.0
