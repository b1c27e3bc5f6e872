// Package invoicing is the care-center invoicing example of outboxgen: the
// events of outbox.yaml, generated into events_gen.go, with their JSON Schema
// (care.invoice.issued.v1.schema.json), AsyncAPI document (asyncapi.json) and
// committed wire contract (outbox.lock.json). Copy the directory to start a
// package of your own.
//
// The generator is a tool of the module (Go 1.24+), recorded once with
//
//	go get -tool github.com/outboxkit/outboxkit/cmd/outboxgen
//
// which adds to go.mod the line
//
//	tool github.com/outboxkit/outboxkit/cmd/outboxgen
//
// so that the //go:generate lines below run the version go.mod pins. Without
// a tool directive, write them as
//
//	//go:generate go run github.com/outboxkit/outboxkit/cmd/outboxgen -in outbox.yaml -out events_gen.go -pkg invoicing
//
// In CI, `go generate ./... && git diff --exit-code` (make verify) or
// `go tool outboxgen -check -in outbox.yaml -out events_gen.go -pkg invoicing`
// fails when a generated file is stale.
package invoicing

//go:generate go tool outboxgen -in outbox.yaml -out events_gen.go -pkg invoicing
//go:generate go tool outboxgen breaking -in outbox.yaml -lock outbox.lock.json
