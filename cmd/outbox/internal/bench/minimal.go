package bench

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outboxkit/framework/outbox"
)

// MinimalBatch is the minimal relay's batch: rows claimed, published and
// deleted per transaction.
const MinimalBatch = 500

// MinimalDefinition says exactly what the minimal-relay baseline does, for
// the report and docs/performance.md.
const MinimalDefinition = "one worker loop in its own process: BEGIN; SELECT seq, id, type, topic, key, payload, headers, created_at " +
	"FROM t WHERE status = 'pending' ORDER BY seq LIMIT 500 FOR UPDATE SKIP LOCKED; publish every row at once " +
	"through the same broker module publisher the relay uses (PublishAsync when it implements outbox.AsyncPublisher, " +
	"else Publish from one goroutine per row), the message being the event id as UUID, the payload, and the headers " +
	"plus the four outbox_* metadata the relay sets; wait for every ack; DELETE FROM t WHERE seq = ANY($1) " +
	"(MySQL/MariaDB: seq IN (...)); COMMIT. No per-key order, no retry (a failed publish stops it), " +
	"10 ms sleep when a claim comes back empty"

// minimalTableName is what RunMinimalRelay accepts as a table name: the
// bench's own generated names, never anything to quote around.
var minimalTableName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// MinimalRelay is the minimal-relay baseline's configuration.
type MinimalRelay struct {
	// DB is the database holding Table; Dialect is "postgres" or "mysql".
	DB      *sql.DB
	Dialect string
	// Table is an outbox table made by the outboxkit migrations (it reads
	// and deletes rows, nothing else).
	Table string
	// Publisher is the broker module's publisher, as the relay gets it.
	Publisher message.Publisher
	// Batch is the claim size. Zero means MinimalBatch.
	Batch int
	// Log receives the one JSON "relay started" line the bench waits for.
	// Nil discards it.
	Log io.Writer
}

// Run runs the minimal relay until ctx ends (then it returns nil) or a
// database or publish error (returned).
func (m MinimalRelay) Run(ctx context.Context) error {
	if !minimalTableName.MatchString(m.Table) {
		return fmt.Errorf("minimal relay: table %q: want a lower-case SQL identifier (letters, digits, _)", m.Table)
	}
	batch := m.Batch
	if batch == 0 {
		batch = MinimalBatch
	}
	if batch < 1 || batch > 10000 {
		return fmt.Errorf("minimal relay: batch %d out of range 1..10000", batch)
	}
	var claim string
	switch m.Dialect {
	case "postgres":
		claim = `SELECT seq, id, type, topic, key, payload, headers, created_at FROM "` + m.Table +
			`" WHERE status = 'pending' ORDER BY seq LIMIT ` + strconv.Itoa(batch) + ` FOR UPDATE SKIP LOCKED`
	case "mysql":
		claim = "SELECT seq, id, type, topic, event_key, payload, headers, created_at FROM `" + m.Table +
			"` WHERE status = 'pending' ORDER BY seq LIMIT " + strconv.Itoa(batch) + " FOR UPDATE SKIP LOCKED"
	default:
		return fmt.Errorf("minimal relay: dialect %q: want postgres or mysql", m.Dialect)
	}
	if m.DB == nil || m.Publisher == nil {
		return errors.New("minimal relay: DB and Publisher are required")
	}
	if m.Log == nil {
		m.Log = io.Discard
	}
	async, isAsync := m.Publisher.(outbox.AsyncPublisher)
	line, _ := json.Marshal(map[string]any{"msg": "relay started", "relay": "minimal", "batch_size": batch, "async_publisher": isAsync})
	fmt.Fprintf(m.Log, "%s\n", line)
	for ctx.Err() == nil {
		n, err := m.once(ctx, claim, async)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("minimal relay: %w", err)
		}
		if n == 0 {
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return nil
}

// minimalRow is one claimed row.
type minimalRow struct {
	seq   int64
	topic string
	msg   *message.Message
}

// once claims, publishes and deletes one batch; it returns the rows done.
func (m MinimalRelay) once(ctx context.Context, claim string, async outbox.AsyncPublisher) (int, error) {
	tx, err := m.DB.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback() }()
	rows, err := tx.QueryContext(ctx, claim)
	if err != nil {
		return 0, fmt.Errorf("claim: %w", err)
	}
	var batch []minimalRow
	for rows.Next() {
		var (
			r                minimalRow
			id, typ, key     string
			payload, headers []byte
			createdAt        any
		)
		if err := rows.Scan(&r.seq, &id, &typ, &r.topic, &key, &payload, &headers, &createdAt); err != nil {
			rows.Close()
			return 0, fmt.Errorf("claim: %w", err)
		}
		md := map[string]string{}
		if len(headers) > 0 {
			if err := json.Unmarshal(headers, &md); err != nil {
				rows.Close()
				return 0, fmt.Errorf("event seq %d: headers are not a JSON object of strings: %w", r.seq, err)
			}
		}
		md[outbox.MetadataEventID] = id
		md[outbox.MetadataEventType] = typ
		md[outbox.MetadataKey] = key
		md[outbox.MetadataCreatedAt] = formatCreatedAt(createdAt)
		r.msg = message.NewMessage(id, payload)
		r.msg.Metadata = md
		batch = append(batch, r)
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("claim: %w", err)
	}
	if len(batch) == 0 {
		return 0, tx.Commit()
	}
	if err := m.publish(ctx, batch, async); err != nil {
		return 0, err
	}
	seqs := make([]string, len(batch))
	for i, r := range batch {
		seqs[i] = strconv.FormatInt(r.seq, 10)
	}
	if m.Dialect == "postgres" {
		_, err = tx.ExecContext(ctx, `DELETE FROM "`+m.Table+`" WHERE seq = ANY($1::bigint[])`, "{"+strings.Join(seqs, ",")+"}")
	} else {
		// The seqs are integers this loop scanned: no quoting needed.
		_, err = tx.ExecContext(ctx, "DELETE FROM `"+m.Table+"` WHERE seq IN ("+strings.Join(seqs, ",")+")")
	}
	if err != nil {
		return 0, fmt.Errorf("delete: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("commit: %w", err)
	}
	return len(batch), nil
}

// publish sends every row at once and waits for every acknowledgement.
func (m MinimalRelay) publish(ctx context.Context, batch []minimalRow, async outbox.AsyncPublisher) error {
	if async != nil {
		waits := make([]func(context.Context) error, len(batch))
		for i, r := range batch {
			w, err := async.PublishAsync(r.topic, r.msg)
			if err != nil {
				return fmt.Errorf("publish: %w", err)
			}
			waits[i] = w
		}
		var first error
		for _, w := range waits {
			if err := w(ctx); err != nil && first == nil {
				first = err
			}
		}
		if first != nil {
			return fmt.Errorf("publish: %w", first)
		}
		return nil
	}
	errs := make([]error, len(batch))
	var wg sync.WaitGroup
	for i, r := range batch {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = m.Publisher.Publish(r.topic, r.msg)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	return nil
}

// formatCreatedAt renders created_at as the relay does (RFC 3339 with
// nanoseconds, UTC), whether the driver scanned a time or text.
func formatCreatedAt(v any) string {
	switch t := v.(type) {
	case time.Time:
		return t.UTC().Format(time.RFC3339Nano)
	case []byte:
		if p, err := time.ParseInLocation("2006-01-02 15:04:05.999999", string(t), time.UTC); err == nil {
			return p.Format(time.RFC3339Nano)
		}
		return string(t)
	case string:
		return t
	}
	return ""
}
