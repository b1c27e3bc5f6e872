package sqlite

import (
	"context"
	"fmt"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

var _ outboxdriver.Inbox = (*Driver)(nil)

// inboxTable is the quoted name of the inbox table: the outbox table's name
// with the suffix "_inbox".
func (d *Driver) inboxTable() string { return quote(d.cfg.Table + "_inbox") }

// InboxMigrateUp implements outboxdriver.Inbox.
func (d *Driver) InboxMigrateUp(ctx context.Context, _ *outboxdriver.InboxMigrateUpParams) error {
	for _, stmt := range []string{
		`CREATE TABLE IF NOT EXISTS ` + d.inboxTable() + ` (
			consumer     TEXT    NOT NULL,
			event_id     TEXT    NOT NULL,
			processed_at INTEGER NOT NULL,
			PRIMARY KEY (consumer, event_id)) WITHOUT ROWID`,
		`CREATE INDEX IF NOT EXISTS ` + quote(d.cfg.Table+"_inbox_processed_idx") + ` ON ` + d.inboxTable() + ` (processed_at)`,
	} {
		if _, err := d.db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("sqlite: inbox migrate: %w", interpretError(err))
		}
	}
	return nil
}

// InboxInsert implements outboxdriver.Inbox. SQLite runs one write
// transaction at a time (Open sets _txlock=immediate), so of two consumers
// handling the same event, the second sees the first's committed row.
func (d *Driver) InboxInsert(ctx context.Context, p *outboxdriver.InboxInsertParams) (bool, error) {
	res, err := p.Tx.ExecContext(ctx, `INSERT INTO `+d.inboxTable()+` (consumer, event_id, processed_at)
		VALUES (?, ?, `+now+`) ON CONFLICT (consumer, event_id) DO NOTHING`, p.Consumer, p.EventID)
	if err != nil {
		return false, interpretError(err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// InboxPrune implements outboxdriver.Inbox.
func (d *Driver) InboxPrune(ctx context.Context, p *outboxdriver.InboxPruneParams) (int64, error) {
	return d.execImmediate(ctx, `DELETE FROM `+d.inboxTable()+` WHERE (consumer, event_id) IN (
		SELECT consumer, event_id FROM `+d.inboxTable()+` WHERE processed_at < ? ORDER BY processed_at LIMIT ?)`,
		p.Before.UnixMicro(), p.Limit)
}
