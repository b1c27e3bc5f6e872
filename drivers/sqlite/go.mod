module github.com/outboxkit/outboxkit/drivers/sqlite

go 1.26.0
