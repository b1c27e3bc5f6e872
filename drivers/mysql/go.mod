module github.com/outboxkit/outboxkit/drivers/mysql

go 1.26.0
