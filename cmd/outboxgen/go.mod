module github.com/outboxkit/outboxkit/cmd/outboxgen

go 1.26.0

require (
	github.com/ThreeDotsLabs/watermill v1.5.1
	github.com/dave/jennifer v1.7.1
	github.com/outboxkit/outboxkit/framework v0.2.0
	github.com/santhosh-tekuri/jsonschema/v6 v6.0.3
	golang.org/x/text v0.44.0
	gopkg.in/yaml.v3 v3.0.1
)

require (
	github.com/google/uuid v1.6.0 // indirect
	github.com/kr/pretty v0.3.1 // indirect
	github.com/lithammer/shortuuid/v3 v3.0.7 // indirect
	github.com/oklog/ulid v1.3.1 // indirect
	github.com/pkg/errors v0.9.1 // indirect
	gopkg.in/check.v1 v1.0.0-20201130134442-10cb98267c6c // indirect
)

tool github.com/outboxkit/outboxkit/cmd/outboxgen
