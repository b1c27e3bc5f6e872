module github.com/outboxkit/outboxkit/brokers/kafka

go 1.26.0
