module github.com/outboxkit/outboxkit/docs

go 1.26.0
