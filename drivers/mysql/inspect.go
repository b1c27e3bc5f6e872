package mysql

import (
	"context"
	"strings"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

var _ outboxdriver.Inspector = (*Driver)(nil)

// activityQuery reads the (status, delivered_at) index: delivered rows of
// the window, bucketed by minute. {T} is the validated, quoted table.
const activityQuery = `SELECT TIMESTAMP(DATE_FORMAT(delivered_at, '%Y-%m-%d %H:%i:00')) AS minute, topic, type, COUNT(*),
	COALESCE(SUM(TIMESTAMPDIFF(MICROSECOND, created_at, delivered_at)), 0) / 1000000
FROM {T}
WHERE status = 'delivered' AND delivered_at >= ?
GROUP BY minute, topic, type
ORDER BY minute DESC, 4 DESC
LIMIT ?`

// deadGroupsQuery reads the dead rows through the status index.
const deadGroupsQuery = `SELECT COALESCE(last_error, '') AS err, COUNT(*), COUNT(DISTINCT type), MIN(created_at), MAX(created_at)
FROM {T}
WHERE status = 'dead'
GROUP BY err
ORDER BY 2 DESC, 1
LIMIT ?`

// EventActivity implements outboxdriver.Inspector.
func (d *Driver) EventActivity(ctx context.Context, p *outboxdriver.EventActivityParams) ([]outboxdriver.ActivityRow, error) {
	rows, err := outboxdriver.QueryActivity(ctx, d.db, strings.ReplaceAll(activityQuery, "{T}", d.table), p.Since.UTC(), p.Limit)
	return rows, interpretError(err)
}

// EventDeadGroups implements outboxdriver.Inspector.
func (d *Driver) EventDeadGroups(ctx context.Context, p *outboxdriver.EventDeadGroupsParams) ([]outboxdriver.DeadGroup, error) {
	groups, err := outboxdriver.QueryDeadGroups(ctx, d.db, strings.ReplaceAll(deadGroupsQuery, "{T}", d.table), p.Limit)
	return groups, interpretError(err)
}
