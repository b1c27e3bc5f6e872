package mysql

import (
	"database/sql"
	"errors"
	"testing"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v3/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outboxkit/framework/outboxwsql/outboxwsqltest"
)

func TestWatermillSQLSchema(t *testing.T) {
	t.Parallel()
	b := setup(t)
	schema := func(a outboxwsqltest.Adapter) WatermillSQLSchema {
		return WatermillSQLSchema{Config: b.drv.cfg, ForwarderTopic: outboxwsqltest.ForwarderTopic,
			MaxPayloadBytes: a.MaxPayloadBytes, KeyMetadata: a.KeyMetadata, TypeMetadata: a.TypeMetadata}
	}
	outboxwsqltest.Run(t, outboxwsqltest.Harness{
		DB: b.db, Driver: b.drv, Outbox: newOutbox(t, b.drv),
		Publish: func(tx *sql.Tx, a outboxwsqltest.Adapter, topic string, forward bool, msgs ...*message.Message) error {
			var pub message.Publisher
			pub, err := wsql.NewPublisher(tx, wsql.PublisherConfig{SchemaAdapter: schema(a)}, nil)
			if err != nil {
				return err
			}
			if forward {
				pub = forwarder.NewPublisher(pub, forwarder.PublisherConfig{ForwarderTopic: outboxwsqltest.ForwarderTopic})
			}
			return pub.Publish(topic, msgs...)
		},
		Subscribe: func() error {
			s := schema(outboxwsqltest.Adapter{})
			q := s.SelectQuery("invoices", "group", wsql.DefaultMySQLOffsetsAdapter{})
			rows, err := b.db.Query(q.Query, q.Args...)
			if err != nil {
				return err
			}
			defer rows.Close()
			if !rows.Next() {
				return errors.New("SelectQuery returned no row")
			}
			_, err = s.UnmarshalMessage(rows)
			return err
		},
	})
}
