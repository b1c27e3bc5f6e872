package mysql

import (
	"context"
	"errors"
	"fmt"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/google/uuid"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

var _ outboxdriver.Inbox = (*Driver)(nil)

// erDupEntry is MySQL's duplicate-key error number.
const erDupEntry = 1062

// inboxTable is the quoted name of the inbox table: the outbox table's name
// with the suffix "_inbox".
func (d *Driver) inboxTable() string { return quote(d.cfg.Table + "_inbox") }

// InboxMigrateUp implements outboxdriver.Inbox.
func (d *Driver) InboxMigrateUp(ctx context.Context, _ *outboxdriver.InboxMigrateUpParams) error {
	_, err := d.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+d.inboxTable()+` (
		consumer     VARCHAR(128) CHARACTER SET ascii NOT NULL,
		event_id     CHAR(36) CHARACTER SET ascii NOT NULL,
		processed_at DATETIME(6) NOT NULL,
		PRIMARY KEY (consumer, event_id),
		KEY processed_idx (processed_at)
	) ENGINE=InnoDB`)
	if err != nil {
		return fmt.Errorf("mysql: inbox migrate: %w", interpretError(err))
	}
	return nil
}

// InboxInsert implements outboxdriver.Inbox. A plain INSERT: a duplicate key
// (error 1062) means already processed. It does not abort the caller's
// transaction in InnoDB (statement-level rollback), and unlike ON DUPLICATE
// KEY UPDATE its answer does not depend on the DSN's clientFoundRows. A
// concurrent uncommitted insert of the same row makes it wait for that
// transaction, then fail with 1062 (committed) or succeed (rolled back).
func (d *Driver) InboxInsert(ctx context.Context, p *outboxdriver.InboxInsertParams) (bool, error) {
	id := p.EventID
	if u, err := uuid.Parse(id); err == nil {
		id = u.String()
	}
	_, err := p.Tx.ExecContext(ctx, `INSERT INTO `+d.inboxTable()+` (consumer, event_id, processed_at)
		VALUES (?, ?, UTC_TIMESTAMP(6))`, p.Consumer, id)
	var me *gomysql.MySQLError
	if errors.As(err, &me) && me.Number == erDupEntry {
		return false, nil
	}
	if err != nil {
		return false, interpretError(err)
	}
	return true, nil
}

// InboxPrune implements outboxdriver.Inbox.
func (d *Driver) InboxPrune(ctx context.Context, p *outboxdriver.InboxPruneParams) (int64, error) {
	res, err := d.db.ExecContext(ctx, `DELETE FROM `+d.inboxTable()+` WHERE processed_at < ? ORDER BY processed_at LIMIT ?`,
		p.Before.UTC(), p.Limit)
	if err != nil {
		return 0, interpretError(err)
	}
	return res.RowsAffected()
}
