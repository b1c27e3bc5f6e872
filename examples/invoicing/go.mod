module github.com/outboxkit/outboxkit/examples/invoicing

go 1.26.0
