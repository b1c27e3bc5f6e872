package outboxdriver

import (
	"context"
	"time"
)

// Inspector is an optional interface for operator consoles (package
// outboxui): aggregates over the outbox table that List cannot answer
// cheaply. Each method is one bounded statement.
type Inspector interface {
	// EventActivity returns, per minute, topic and type, how many events
	// were delivered since Since and their summed delivery lag
	// (delivered_at - created_at). It reads delivered rows only (the
	// delivered index), so with a relay that deletes delivered events it
	// returns nothing. At most Limit rows, newest minutes first.
	EventActivity(ctx context.Context, params *EventActivityParams) ([]ActivityRow, error)
	// EventDeadGroups returns the dead events grouped by last error, the
	// largest groups first, at most Limit groups.
	EventDeadGroups(ctx context.Context, params *EventDeadGroupsParams) ([]DeadGroup, error)
}

// EventActivityParams are the parameters of Inspector.EventActivity.
type EventActivityParams struct {
	// Since bounds the window: delivered_at >= Since.
	Since time.Time
	// Limit bounds the number of rows returned.
	Limit int
}

// ActivityRow is one (minute, topic, type) cell of Inspector.EventActivity.
type ActivityRow struct {
	// Minute is the start of the minute (UTC) the events were delivered in.
	Minute time.Time
	Topic  string
	Type   string
	// Delivered counts the events delivered in that minute.
	Delivered int64
	// LagSeconds is the sum over those events of delivered_at - created_at.
	LagSeconds float64
}

// EventDeadGroupsParams are the parameters of Inspector.EventDeadGroups.
type EventDeadGroupsParams struct {
	// Limit bounds the number of groups returned.
	Limit int
}

// DeadGroup is the dead events sharing one last error.
type DeadGroup struct {
	LastError string
	Count     int64
	// Types is the number of distinct event types in the group.
	Types int64
	// Oldest and Newest are the created_at bounds of the group.
	Oldest, Newest time.Time
}

// QueryActivity runs an EventActivity query whose columns are, in this
// order: minute, topic, type, count, summed lag in seconds — for drivers
// whose time columns scan into time.Time. Errors are returned untranslated.
func QueryActivity(ctx context.Context, q Querier, query string, args ...any) ([]ActivityRow, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ActivityRow
	for rows.Next() {
		var r ActivityRow
		if err := rows.Scan(&r.Minute, &r.Topic, &r.Type, &r.Delivered, &r.LagSeconds); err != nil {
			return nil, err
		}
		r.Minute = r.Minute.UTC()
		out = append(out, r)
	}
	return out, rows.Err()
}

// QueryDeadGroups runs an EventDeadGroups query whose columns are, in this
// order: last error, count, distinct types, oldest and newest created_at —
// for drivers whose time columns scan into time.Time. Errors are returned
// untranslated.
func QueryDeadGroups(ctx context.Context, q Querier, query string, args ...any) ([]DeadGroup, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []DeadGroup
	for rows.Next() {
		var g DeadGroup
		if err := rows.Scan(&g.LastError, &g.Count, &g.Types, &g.Oldest, &g.Newest); err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, rows.Err()
}
