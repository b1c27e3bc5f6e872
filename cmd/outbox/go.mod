module github.com/outboxkit/outboxkit/cmd/outbox

go 1.26.0
