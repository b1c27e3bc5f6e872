module github.com/outboxkit/outboxkit/examples/invoicing

go 1.26.0

require (
	github.com/ThreeDotsLabs/watermill v1.5.1
	github.com/nats-io/nats.go v1.53.1
	github.com/outboxkit/outboxkit/drivers/postgres v0.2.0
	github.com/outboxkit/outboxkit/framework v0.2.0
)

require (
	filippo.io/edwards25519 v1.2.0 // indirect
	github.com/ThreeDotsLabs/watermill-nats/v2 v2.1.3 // indirect
	github.com/ThreeDotsLabs/watermill-sql/v3 v3.1.0 // indirect
	github.com/dave/jennifer v1.7.1 // indirect
	github.com/go-sql-driver/mysql v1.10.1 // indirect
	github.com/jackc/pgio v1.0.0 // indirect
	github.com/jackc/pglogrepl v0.0.0-20251213150135-2e8d0df862c1 // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/pgx/v5 v5.13.0 // indirect
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/nats-io/nkeys v0.4.16 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	github.com/rogpeppe/go-internal v1.16.0 // indirect
	github.com/santhosh-tekuri/jsonschema/v6 v6.0.3 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	golang.org/x/text v0.44.0 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)

require (
	github.com/google/uuid v1.6.0
	github.com/lib/pq v1.12.3 // indirect
	github.com/lithammer/shortuuid/v3 v3.0.7 // indirect
	github.com/oklog/ulid v1.3.1 // indirect
	github.com/outboxkit/outboxkit/brokers/nats v0.2.0
	github.com/outboxkit/outboxkit/cmd/outboxgen v0.2.0 // indirect
	github.com/outboxkit/outboxkit/drivers/mysql v0.2.0
	github.com/pkg/errors v0.9.1 // indirect
)

tool github.com/outboxkit/outboxkit/cmd/outboxgen
