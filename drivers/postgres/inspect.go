package postgres

import (
	"context"
	"strings"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

var _ outboxdriver.Inspector = (*Driver)(nil)

// activityQuery reads the delivered index only: delivered rows of the
// window, bucketed by minute. {T} is the validated, quoted table.
const activityQuery = `SELECT date_trunc('minute', delivered_at), topic, type, count(*),
	coalesce(sum(extract(epoch FROM delivered_at - created_at)), 0)::float8
FROM {T}
WHERE status = 'delivered' AND delivered_at >= $1
GROUP BY 1, 2, 3
ORDER BY 1 DESC, 4 DESC
LIMIT $2`

// deadGroupsQuery reads the (status, seq) index's dead entries.
const deadGroupsQuery = `SELECT coalesce(last_error, ''), count(*), count(DISTINCT type), min(created_at), max(created_at)
FROM {T}
WHERE status = 'dead'
GROUP BY 1
ORDER BY 2 DESC, 1
LIMIT $1`

// EventActivity implements outboxdriver.Inspector.
func (d *Driver) EventActivity(ctx context.Context, p *outboxdriver.EventActivityParams) ([]outboxdriver.ActivityRow, error) {
	rows, err := outboxdriver.QueryActivity(ctx, d.db, strings.ReplaceAll(activityQuery, "{T}", d.table), p.Since, p.Limit)
	return rows, interpretError(err)
}

// EventDeadGroups implements outboxdriver.Inspector.
func (d *Driver) EventDeadGroups(ctx context.Context, p *outboxdriver.EventDeadGroupsParams) ([]outboxdriver.DeadGroup, error) {
	groups, err := outboxdriver.QueryDeadGroups(ctx, d.db, strings.ReplaceAll(deadGroupsQuery, "{T}", d.table), p.Limit)
	return groups, interpretError(err)
}
