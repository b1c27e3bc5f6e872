module github.com/outboxkit/outboxkit/cmd/outboxgen

go 1.26.0
