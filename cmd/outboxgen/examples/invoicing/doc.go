// Package invoicing is the care-center invoicing example of outboxgen: the
// events of outbox.yaml, generated into events_gen.go, with their JSON Schema
// (care.invoice.issued.v1.schema.json), AsyncAPI document (asyncapi.json) and
// committed wire contract (outbox.lock.json). Copy the directory to start a
// package of your own.
package invoicing

//go:generate go run github.com/outboxkit/outboxkit/cmd/outboxgen -in outbox.yaml -out events_gen.go -pkg invoicing
//go:generate go run github.com/outboxkit/outboxkit/cmd/outboxgen breaking -in outbox.yaml -lock outbox.lock.json
