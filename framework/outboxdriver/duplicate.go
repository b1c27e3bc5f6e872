package outboxdriver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
)

// ErrDuplicateEvent is returned (wrapped) by Driver.EventInsert when an
// event's id is already stored with a different type, topic, key or payload.
// Inserting the same id with identical content is not an error: it is the
// idempotent insert the id exists for. Headers are not compared: the trace
// context Config.Propagate adds legitimately differs between two attempts of
// the same insert.
var ErrDuplicateEvent = errors.New("outbox: event id already stored with different content")

// CheckDuplicates is called by EventInsert when its INSERT skipped some
// events because their id was already stored. It runs query on q (the
// caller's transaction) with args: query must select id, type, topic, key
// and payload of the stored events with the ids of events. It returns an
// error wrapping
// ErrDuplicateEvent naming the first event whose content differs (by its
// index in the Insert call: first is the index of events[0]), or nil. An event of events whose id is not in stored is
// ignored.
// Database errors are returned untranslated.
func CheckDuplicates(ctx context.Context, q Querier, query string, args []any, events []InsertEvent, first int) error {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	byID := make(map[string]*InsertEvent, len(events))
	for rows.Next() {
		s := &InsertEvent{}
		if err := rows.Scan(&s.ID, &s.Type, &s.Topic, &s.Key, &s.Payload); err != nil {
			return err
		}
		byID[s.ID] = s
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for i, e := range events {
		s, ok := byID[e.ID]
		if !ok {
			continue
		}
		var field string
		switch {
		case s.Type != e.Type:
			field = "type"
		case s.Topic != e.Topic:
			field = "topic"
		case s.Key != e.Key:
			field = "key"
		case !bytes.Equal(s.Payload, e.Payload):
			field = "payload"
		default:
			continue
		}
		return fmt.Errorf("event %d: id %s is already stored with a different %s: %w", first+i, e.ID, field, ErrDuplicateEvent)
	}
	return nil
}
