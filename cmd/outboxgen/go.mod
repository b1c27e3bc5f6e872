module github.com/outboxkit/outboxkit/cmd/outboxgen

go 1.26.0

require github.com/outboxkit/outboxkit/framework v0.0.0

replace github.com/outboxkit/outboxkit/framework => ../../framework
