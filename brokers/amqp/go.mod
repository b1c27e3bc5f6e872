module github.com/outboxkit/outboxkit/brokers/amqp

go 1.26.0

require (
	github.com/ThreeDotsLabs/watermill v1.5.1
	github.com/outboxkit/outboxkit/framework v0.2.0
	github.com/rabbitmq/amqp091-go v1.16.0
)

require (
	github.com/stretchr/testify v1.12.1 // indirect
	go.yaml.in/yaml/v3 v3.0.6 // indirect
)

require (
	github.com/ThreeDotsLabs/watermill-amqp/v3 v3.0.2
	github.com/cenkalti/backoff/v3 v3.2.2 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/hashicorp/errwrap v1.1.0 // indirect
	github.com/hashicorp/go-multierror v1.1.1 // indirect
	github.com/lithammer/shortuuid/v3 v3.0.7 // indirect
	github.com/oklog/ulid v1.3.1 // indirect
	github.com/pkg/errors v0.9.1 // indirect
)
