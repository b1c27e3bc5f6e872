module github.com/outboxkit/outboxkit/drivers/postgres

go 1.26.0

require github.com/outboxkit/outboxkit/framework v0.0.0

require github.com/lib/pq v1.12.3

replace github.com/outboxkit/outboxkit/framework => ../../framework
