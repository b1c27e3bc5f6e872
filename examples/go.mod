module github.com/outboxkit/outboxkit/examples

go 1.26.0
