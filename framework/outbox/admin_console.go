package outbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// ErrNotSupported is returned by Activity when the driver does not implement
// outboxdriver.Inspector.
var ErrNotSupported = errors.New("outbox: not supported by this driver")

// deadScanLimit bounds DeadGroups' fallback scan on drivers without
// outboxdriver.Inspector.
const deadScanLimit = 10000

// Activity returns the delivered events since since, per minute, topic and
// type, with their summed delivery lag (see outboxdriver.Inspector). Zero
// limit means 5000 rows. It returns an error wrapping ErrNotSupported when
// the driver cannot tell.
func (o *Outbox) Activity(ctx context.Context, since time.Time, limit int) ([]outboxdriver.ActivityRow, error) {
	in, ok := o.driver.(outboxdriver.Inspector)
	if !ok {
		return nil, fmt.Errorf("outbox: activity: %w (%s)", ErrNotSupported, o.driver.Name())
	}
	rows, err := in.EventActivity(ctx, &outboxdriver.EventActivityParams{Since: since, Limit: cmp.Or(limit, 5000)})
	if err != nil {
		return nil, fmt.Errorf("outbox: activity: %w", err)
	}
	return rows, nil
}

// DeadGroups are the dead events grouped by last error.
type DeadGroups struct {
	// Groups are ordered by size, largest first.
	Groups []outboxdriver.DeadGroup
	// Partial is true when the driver has no aggregate query and more dead
	// events exist than the fallback scan reads (10000): the counts then
	// cover the oldest 10000 dead events only.
	Partial bool
}

// DeadGroups returns at most limit groups of dead events sharing a last
// error (zero limit means 100). Drivers implementing outboxdriver.Inspector
// answer in one query; for the others the dead events are listed and
// grouped here, at most 10000 of them.
func (o *Outbox) DeadGroups(ctx context.Context, limit int) (*DeadGroups, error) {
	limit = cmp.Or(limit, 100)
	if in, ok := o.driver.(outboxdriver.Inspector); ok {
		g, err := in.EventDeadGroups(ctx, &outboxdriver.EventDeadGroupsParams{Limit: limit})
		if err != nil {
			return nil, fmt.Errorf("outbox: dead groups: %w", err)
		}
		return &DeadGroups{Groups: g}, nil
	}
	byErr := map[string]*outboxdriver.DeadGroup{}
	types := map[string]map[string]bool{}
	out := &DeadGroups{}
	var after int64
	for seen := 0; ; {
		page, err := o.List(ctx, ListFilter{Status: StatusDead, After: after, Limit: 1000})
		if err != nil {
			return nil, fmt.Errorf("outbox: dead groups: %w", err)
		}
		for _, e := range page.Events {
			g := byErr[e.LastError]
			if g == nil {
				g = &outboxdriver.DeadGroup{LastError: e.LastError, Oldest: e.CreatedAt}
				byErr[e.LastError], types[e.LastError] = g, map[string]bool{}
			}
			g.Count++
			g.Newest = e.CreatedAt
			if !types[e.LastError][e.Type] {
				types[e.LastError][e.Type] = true
				g.Types++
			}
		}
		seen += len(page.Events)
		if page.Next == 0 {
			break
		}
		if seen >= deadScanLimit {
			out.Partial = true
			break
		}
		after = page.Next
	}
	for _, g := range byErr {
		out.Groups = append(out.Groups, *g)
	}
	sort.Slice(out.Groups, func(i, j int) bool {
		a, b := out.Groups[i], out.Groups[j]
		return a.Count > b.Count || a.Count == b.Count && a.LastError < b.LastError
	})
	if len(out.Groups) > limit {
		out.Groups = out.Groups[:limit]
	}
	return out, nil
}

// RetryDeadMatching makes every dead event matching f pending again with a
// fresh attempt budget (f.Status is ignored: only dead events are retried)
// and returns how many changed. It works page by page (f.Limit, zero means
// 1000), so a large group never takes one long statement.
func (o *Outbox) RetryDeadMatching(ctx context.Context, f ListFilter) (int64, error) {
	f.Status = StatusDead
	f.Limit = cmp.Or(f.Limit, 1000)
	var total int64
	for {
		page, err := o.List(ctx, f)
		if err != nil {
			return total, err
		}
		ids := make([]string, len(page.Events))
		for i, e := range page.Events {
			ids[i] = e.ID
		}
		n, err := o.Retry(ctx, ids...)
		total += n
		if err != nil || page.Next == 0 {
			return total, err
		}
		f.After = page.Next
	}
}
