module github.com/outboxkit/outboxkit/brokers/memory

go 1.26.0
