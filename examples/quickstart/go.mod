module github.com/outboxkit/outboxkit/examples/quickstart

go 1.26.0
