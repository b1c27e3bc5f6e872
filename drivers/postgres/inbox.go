package postgres

import (
	"context"
	"fmt"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

var _ outboxdriver.Inbox = (*Driver)(nil)

// inboxTable is the quoted, qualified name of the inbox table: the outbox
// table's name with the suffix "_inbox".
func (d *Driver) inboxTable() string {
	t := quote(d.cfg.Table + "_inbox")
	if d.cfg.Schema != "" {
		t = quote(d.cfg.Schema) + "." + t
	}
	return t
}

// InboxMigrateUp implements outboxdriver.Inbox.
func (d *Driver) InboxMigrateUp(ctx context.Context, _ *outboxdriver.InboxMigrateUpParams) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return interpretError(err)
	}
	defer tx.Rollback() //nolint:errcheck
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", d.migLock); err != nil {
		return interpretError(err)
	}
	stmts := []string{
		`CREATE TABLE IF NOT EXISTS ` + d.inboxTable() + ` (
			consumer     text        NOT NULL,
			event_id     uuid        NOT NULL,
			processed_at timestamptz NOT NULL DEFAULT now(),
			PRIMARY KEY (consumer, event_id))`,
		`CREATE INDEX IF NOT EXISTS ` + quote(d.cfg.Table+"_inbox_processed_idx") + ` ON ` + d.inboxTable() + ` (processed_at)`,
	}
	if d.cfg.Schema != "" {
		stmts = append([]string{"CREATE SCHEMA IF NOT EXISTS " + quote(d.cfg.Schema)}, stmts...)
	}
	for _, s := range stmts {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("postgres: inbox migrate: %w", interpretError(err))
		}
	}
	return interpretError(tx.Commit())
}

// InboxInsert implements outboxdriver.Inbox. ON CONFLICT DO NOTHING waits
// for a concurrent uncommitted insert of the same row and then reports it as
// a duplicate, or inserts if that transaction rolled back.
func (d *Driver) InboxInsert(ctx context.Context, p *outboxdriver.InboxInsertParams) (bool, error) {
	res, err := p.Tx.ExecContext(ctx, `INSERT INTO `+d.inboxTable()+` (consumer, event_id) VALUES ($1, $2)
		ON CONFLICT (consumer, event_id) DO NOTHING`, p.Consumer, p.EventID)
	if err != nil {
		return false, interpretError(err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// InboxPrune implements outboxdriver.Inbox.
func (d *Driver) InboxPrune(ctx context.Context, p *outboxdriver.InboxPruneParams) (int64, error) {
	return d.exec(ctx, `DELETE FROM `+d.inboxTable()+` WHERE (consumer, event_id) IN (
		SELECT consumer, event_id FROM `+d.inboxTable()+` WHERE processed_at < $1 ORDER BY processed_at LIMIT $2)`,
		p.Before, p.Limit)
}
