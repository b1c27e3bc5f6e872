package sqlite

import (
	"context"
	"database/sql"
	"strings"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

var _ outboxdriver.Acknowledger = (*Driver)(nil)

// ackColumns are the ack table's columns (alias a) in scanAck's order.
const ackColumns = `a.event_id, a.status, a.reason, a.deadline_ms, a.resend_backoff_ms, a.max_resends, a.resends,
	a.created_at, a.answered_at, a.resent_at`

// insertAcks writes the ack rows of the chunk's events that await an
// acknowledgment, in one statement of the writer's transaction; a chunk
// without any costs nothing.
func (d *Driver) insertAcks(ctx context.Context, tx *sql.Tx, chunk []outboxdriver.InsertEvent) error {
	var b strings.Builder
	var args []any
	for _, e := range chunk {
		if e.Ack == nil {
			continue
		}
		if len(args) == 0 {
			b.WriteString("INSERT INTO " + d.ackTable + " (event_id, deadline_ms, resend_backoff_ms, max_resends, created_at) VALUES ")
		} else {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?)")
		args = append(args, e.ID, e.Ack.Deadline.Milliseconds(), e.Ack.ResendBackoff.Milliseconds(), e.Ack.MaxResends, e.CreatedAt.UnixMicro())
	}
	if len(args) == 0 {
		return nil
	}
	b.WriteString(" ON CONFLICT (event_id) DO NOTHING")
	_, err := tx.ExecContext(ctx, b.String(), args...)
	return interpretError(err)
}

// AckAnswer implements outboxdriver.Acknowledger.
func (d *Driver) AckAnswer(ctx context.Context, p *outboxdriver.AckAnswerParams) (bool, error) {
	changed, err := outboxdriver.AnswerAck(ctx, p.Tx, d.queries.ackAnswer, []any{p.EventID, string(p.Status), p.Reason}, d.queries.ackExists, p.EventID)
	return changed, interpretError(err)
}

func scanAck(sc scanner) (*outboxdriver.AckRow, error) {
	a := &outboxdriver.AckRow{}
	var status string
	var deadline, backoff, created int64
	var answered, resent sql.NullInt64
	if err := sc.Scan(&a.EventID, &status, &a.Reason, &deadline, &backoff, &a.MaxResends, &a.Resends,
		&created, &answered, &resent); err != nil {
		return nil, interpretError(err)
	}
	a.Status = outboxdriver.AckStatus(status)
	a.Deadline, a.ResendBackoff = outboxdriver.Millis(deadline), outboxdriver.Millis(backoff)
	a.CreatedAt = fromMicros(created)
	if answered.Valid {
		t := fromMicros(answered.Int64)
		a.AnsweredAt = &t
	}
	if resent.Valid {
		t := fromMicros(resent.Int64)
		a.ResentAt = &t
	}
	return a, nil
}

func (d *Driver) queryAcks(ctx context.Context, query string, args ...any) ([]*outboxdriver.AckRow, error) {
	rows, err := d.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, interpretError(err)
	}
	defer rows.Close()
	var out []*outboxdriver.AckRow
	for rows.Next() {
		a, err := scanAck(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, interpretError(rows.Err())
}

// AckGet implements outboxdriver.Acknowledger.
func (d *Driver) AckGet(ctx context.Context, p *outboxdriver.AckGetParams) (map[string]*outboxdriver.AckRow, error) {
	out := map[string]*outboxdriver.AckRow{}
	if len(p.IDs) == 0 {
		return out, nil
	}
	acks, err := d.queryAcks(ctx, d.queries.ackGet, idList(p.IDs))
	for _, a := range acks {
		out[a.EventID] = a
	}
	return out, err
}

// AckList implements outboxdriver.Acknowledger.
func (d *Driver) AckList(ctx context.Context, p *outboxdriver.AckListParams) ([]string, error) {
	rows, err := d.db.QueryContext(ctx, d.queries.ackList, string(p.Status), p.AfterSeq, p.Limit)
	if err != nil {
		return nil, interpretError(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, interpretError(err)
		}
		out = append(out, id)
	}
	return out, interpretError(rows.Err())
}

// AckListDue implements outboxdriver.Acknowledger.
func (d *Driver) AckListDue(ctx context.Context, p *outboxdriver.AckListDueParams) ([]*outboxdriver.AckRow, error) {
	return d.queryAcks(ctx, d.queries.ackDue, p.Limit)
}

// AckMarkResent implements outboxdriver.Acknowledger.
func (d *Driver) AckMarkResent(ctx context.Context, p *outboxdriver.AckMarkParams) (bool, error) {
	n, err := d.execImmediate(ctx, d.queries.ackMarkResent, p.EventID, p.Resends)
	return n > 0, err
}

// AckMarkUnacknowledged implements outboxdriver.Acknowledger.
func (d *Driver) AckMarkUnacknowledged(ctx context.Context, p *outboxdriver.AckMarkParams) (bool, error) {
	n, err := d.execImmediate(ctx, d.queries.ackMarkUnacknowledged, p.EventID, p.Resends)
	return n > 0, err
}

// AckRearm implements outboxdriver.Acknowledger.
func (d *Driver) AckRearm(ctx context.Context, p *outboxdriver.AckRearmParams) (int64, error) {
	if len(p.IDs) == 0 {
		return 0, nil
	}
	return d.execImmediate(ctx, d.queries.ackRearm, idList(p.IDs))
}

// AckStats implements outboxdriver.Acknowledger.
func (d *Driver) AckStats(ctx context.Context, _ *outboxdriver.AckStatsParams) (*outboxdriver.AckStats, error) {
	s := &outboxdriver.AckStats{}
	var oldest sql.NullInt64
	var nowUS int64
	if err := d.db.QueryRowContext(ctx, d.queries.ackStats).Scan(&s.Awaiting, &s.Rejected, &s.Unacknowledged, &oldest, &nowUS); err != nil {
		return nil, interpretError(err)
	}
	if oldest.Valid {
		s.OldestAwaiting = fromMicros(oldest.Int64)
	}
	s.Now = fromMicros(nowUS)
	return s, nil
}

// AckPurge implements outboxdriver.Acknowledger.
func (d *Driver) AckPurge(ctx context.Context, p *outboxdriver.AckPurgeParams) (int64, error) {
	return d.execImmediate(ctx, d.queries.ackPurge, p.Limit)
}
