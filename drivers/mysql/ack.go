package mysql

import (
	"context"
	"database/sql"
	"strings"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

var _ outboxdriver.Acknowledger = (*Driver)(nil)

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
			b.WriteString("INSERT INTO " + d.ackTable + " (event_id, reason, deadline_ms, resend_backoff_ms, max_resends, created_at) VALUES ")
		} else {
			b.WriteByte(',')
		}
		b.WriteString("(?,'',?,?,?,?)")
		args = append(args, e.ID, e.Ack.Deadline.Milliseconds(), e.Ack.ResendBackoff.Milliseconds(), e.Ack.MaxResends, e.CreatedAt.UTC())
	}
	if len(args) == 0 {
		return nil
	}
	b.WriteString(" ON DUPLICATE KEY UPDATE event_id = event_id")
	_, err := tx.ExecContext(ctx, b.String(), args...)
	return interpretError(err)
}

// AckAnswer implements outboxdriver.Acknowledger.
func (d *Driver) AckAnswer(ctx context.Context, p *outboxdriver.AckAnswerParams) (bool, error) {
	changed, err := outboxdriver.AnswerAck(ctx, p.Tx, d.queries.ackAnswer, []any{string(p.Status), p.Reason, p.EventID}, d.queries.ackExists, p.EventID)
	return changed, interpretError(err)
}

// scanAck scans an ack row (outboxdriver.ScanAckRow's column order) and
// translates its error.
func scanAck(sc outboxdriver.Scanner) (*outboxdriver.AckRow, error) {
	a, err := outboxdriver.ScanAckRow(sc)
	return a, interpretError(err)
}

// queryRC runs a read in a READ COMMITTED transaction (no gap locks, whatever
// the server's default isolation) and hands each row to fn.
func (d *Driver) queryRC(ctx context.Context, query string, args []any, fn func(*sql.Rows) error) error {
	return d.readCommitted(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return interpretError(err)
		}
		defer rows.Close()
		for rows.Next() {
			if err := fn(rows); err != nil {
				return err
			}
		}
		return interpretError(rows.Err())
	})
}

// AckGet implements outboxdriver.Acknowledger.
func (d *Driver) AckGet(ctx context.Context, p *outboxdriver.AckGetParams) (map[string]*outboxdriver.AckRow, error) {
	out := map[string]*outboxdriver.AckRow{}
	ids := normalizeIDs(p.IDs)
	for start := 0; start < len(ids); start += maxIDsPerStatement {
		chunk := ids[start:min(start+maxIDsPerStatement, len(ids))]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		err := d.queryRC(ctx, withIDs(d.queries.ackGet, len(chunk)), args, func(rows *sql.Rows) error {
			a, err := scanAck(rows)
			if err == nil {
				out[a.EventID] = a
			}
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// AckList implements outboxdriver.Acknowledger.
func (d *Driver) AckList(ctx context.Context, p *outboxdriver.AckListParams) ([]string, error) {
	var out []string
	err := d.queryRC(ctx, d.queries.ackList, []any{string(p.Status), p.AfterSeq, p.Limit}, func(rows *sql.Rows) error {
		var id string
		err := rows.Scan(&id)
		out = append(out, id)
		return interpretError(err)
	})
	return out, err
}

// AckListDue implements outboxdriver.Acknowledger.
func (d *Driver) AckListDue(ctx context.Context, p *outboxdriver.AckListDueParams) ([]*outboxdriver.AckRow, error) {
	var out []*outboxdriver.AckRow
	err := d.queryRC(ctx, d.queries.ackDue, []any{p.Limit}, func(rows *sql.Rows) error {
		a, err := scanAck(rows)
		out = append(out, a)
		return err
	})
	return out, err
}

func (d *Driver) execRC(ctx context.Context, query string, args ...any) (int64, error) {
	var n int64
	err := d.readCommitted(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return interpretError(err)
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}

// AckMarkResent implements outboxdriver.Acknowledger.
func (d *Driver) AckMarkResent(ctx context.Context, p *outboxdriver.AckMarkParams) (bool, error) {
	n, err := d.execRC(ctx, d.queries.ackMarkResent, p.EventID, p.Resends)
	return n > 0, err
}

// AckMarkUnacknowledged implements outboxdriver.Acknowledger.
func (d *Driver) AckMarkUnacknowledged(ctx context.Context, p *outboxdriver.AckMarkParams) (bool, error) {
	n, err := d.execRC(ctx, d.queries.ackMarkUnacknowledged, p.EventID, p.Resends)
	return n > 0, err
}

// AckRearm implements outboxdriver.Acknowledger.
func (d *Driver) AckRearm(ctx context.Context, p *outboxdriver.AckRearmParams) (int64, error) {
	return d.execIDs(ctx, d.queries.ackRearm, p.IDs)
}

// AckStats implements outboxdriver.Acknowledger.
func (d *Driver) AckStats(ctx context.Context, _ *outboxdriver.AckStatsParams) (*outboxdriver.AckStats, error) {
	s := &outboxdriver.AckStats{}
	err := d.queryRC(ctx, d.queries.ackStats, nil, func(rows *sql.Rows) error {
		var oldest sql.NullTime
		if err := rows.Scan(&s.Awaiting, &s.Rejected, &s.Unacknowledged, &oldest, &s.Now); err != nil {
			return interpretError(err)
		}
		if oldest.Valid {
			s.OldestAwaiting = oldest.Time
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// AckPurge implements outboxdriver.Acknowledger.
func (d *Driver) AckPurge(ctx context.Context, p *outboxdriver.AckPurgeParams) (int64, error) {
	return d.execRC(ctx, d.queries.ackPurge, p.Limit)
}
