module github.com/outboxkit/outboxkit/brokers/redisstream

go 1.26.0
