module github.com/outboxkit/outboxkit/conformance

go 1.26.0
