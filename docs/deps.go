//go:build docblocks

package docs

// The code blocks of the documentation import these packages. The blocks are
// written to temporary directories of this module only while the test runs,
// so this file (excluded from builds by its tag) keeps their requirements in
// go.mod when `go mod tidy` runs.
import (
	_ "github.com/ThreeDotsLabs/watermill"
	_ "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	_ "github.com/ThreeDotsLabs/watermill-sql/v3/pkg/sql"
	_ "github.com/ThreeDotsLabs/watermill/components/forwarder"
	_ "github.com/ThreeDotsLabs/watermill/message"
	_ "github.com/ThreeDotsLabs/watermill/message/router/middleware"
	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "github.com/lib/pq"
	_ "github.com/outboxkit/outboxkit/brokers/nats"
	_ "github.com/outboxkit/outboxkit/cmd/outboxgen/examples/invoicing"
	_ "github.com/outboxkit/outboxkit/drivers/mysql"
	_ "github.com/outboxkit/outboxkit/drivers/postgres"
	_ "github.com/outboxkit/outboxkit/framework/inbox"
	_ "github.com/outboxkit/outboxkit/framework/outbox"
	_ "github.com/outboxkit/outboxkit/framework/outboxbroker"
	_ "go.yaml.in/yaml/v3"
)
