package sqlite

import (
	"context"
	"strings"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

var _ outboxdriver.Inspector = (*Driver)(nil)

// activityQuery reads the delivered index: delivered rows of the window
// (times are Unix microseconds), bucketed by minute. {T} is the validated,
// quoted table.
const activityQuery = `SELECT (delivered_at / 60000000) * 60000000 AS minute, topic, type, count(*),
	coalesce(sum(delivered_at - created_at), 0) / 1000000.0
FROM {T}
WHERE status = 'delivered' AND delivered_at >= ?1
GROUP BY minute, topic, type
ORDER BY minute DESC, 4 DESC
LIMIT ?2`

// deadGroupsQuery reads the dead rows through the status index.
const deadGroupsQuery = `SELECT coalesce(last_error, '') AS err, count(*), count(DISTINCT type), min(created_at), max(created_at)
FROM {T}
WHERE status = 'dead'
GROUP BY err
ORDER BY 2 DESC, 1
LIMIT ?1`

// EventActivity implements outboxdriver.Inspector.
func (d *Driver) EventActivity(ctx context.Context, p *outboxdriver.EventActivityParams) ([]outboxdriver.ActivityRow, error) {
	rows, err := d.db.QueryContext(ctx, strings.ReplaceAll(activityQuery, "{T}", d.table), p.Since.UnixMicro(), p.Limit)
	if err != nil {
		return nil, interpretError(err)
	}
	defer rows.Close()
	var out []outboxdriver.ActivityRow
	for rows.Next() {
		var r outboxdriver.ActivityRow
		var minute int64
		if err := rows.Scan(&minute, &r.Topic, &r.Type, &r.Delivered, &r.LagSeconds); err != nil {
			return nil, interpretError(err)
		}
		r.Minute = fromMicros(minute)
		out = append(out, r)
	}
	return out, interpretError(rows.Err())
}

// EventDeadGroups implements outboxdriver.Inspector.
func (d *Driver) EventDeadGroups(ctx context.Context, p *outboxdriver.EventDeadGroupsParams) ([]outboxdriver.DeadGroup, error) {
	rows, err := d.db.QueryContext(ctx, strings.ReplaceAll(deadGroupsQuery, "{T}", d.table), p.Limit)
	if err != nil {
		return nil, interpretError(err)
	}
	defer rows.Close()
	var out []outboxdriver.DeadGroup
	for rows.Next() {
		var g outboxdriver.DeadGroup
		var oldest, newest int64
		if err := rows.Scan(&g.LastError, &g.Count, &g.Types, &oldest, &newest); err != nil {
			return nil, interpretError(err)
		}
		g.Oldest, g.Newest = fromMicros(oldest), fromMicros(newest)
		out = append(out, g)
	}
	return out, interpretError(rows.Err())
}
