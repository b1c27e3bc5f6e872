package main

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/outboxkit/outboxkit/drivers/mysql"
	"github.com/outboxkit/outboxkit/drivers/postgres"
	"github.com/outboxkit/outboxkit/drivers/sqlite"
	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxbroker"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// globalFlags are the persistent flags every command shares.
type globalFlags struct {
	config    string
	dbURL     string
	brokerURL string
	table     string
	schema    string
	timeout   time.Duration
}

func (g *globalFlags) register(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringVar(&g.config, "config", "", "YAML config file (env OUTBOX_CONFIG)")
	f.StringVar(&g.dbURL, "db-url", "", "database URL: postgres://..., mysql://user:pass@host:3306/db or sqlite:///path.db (env OUTBOX_DB_URL)")
	f.StringVar(&g.brokerURL, "broker-url", "", "broker URL: nats://, kafka://, amqp://, redis://, memory:// (env OUTBOX_BROKER_URL)")
	f.StringVar(&g.table, "table", "", `outbox table name (env OUTBOX_TABLE, default "outbox")`)
	f.StringVar(&g.schema, "schema", "", "database schema holding the table (env OUTBOX_SCHEMA; PostgreSQL only)")
	f.DurationVar(&g.timeout, "timeout", 30*time.Second, "timeout of each administrative command")
}

// fileConfig is the optional YAML file. Unknown keys are errors.
type fileConfig struct {
	DBURL       string      `yaml:"db_url"`
	BrokerURL   string      `yaml:"broker_url"`
	Table       string      `yaml:"table"`
	Schema      string      `yaml:"schema"`
	MetricsAddr string      `yaml:"metrics_addr"`
	Notify      bool        `yaml:"notify"`
	Relay       relayConfig `yaml:"relay"`
}

// relayConfig mirrors the relay flags in the YAML file.
type relayConfig struct {
	BatchSize      int           `yaml:"batch_size"`
	Concurrency    int           `yaml:"concurrency"`
	PollInterval   time.Duration `yaml:"poll_interval"`
	MinPoll        time.Duration `yaml:"min_poll_interval"`
	MaxAttempts    int           `yaml:"max_attempts"`
	LeaseDuration  time.Duration `yaml:"lease_duration"`
	PublishTimeout time.Duration `yaml:"publish_timeout"`
	BackoffMin     time.Duration `yaml:"backoff_min"`
	BackoffMax     time.Duration `yaml:"backoff_max"`
	// ShutdownTimeout is RelayConfig.ShutdownTimeout.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	Publish         string        `yaml:"publish"`
	// DeleteDelivered is PostgreSQL's Config.DeleteDelivered.
	DeleteDelivered bool `yaml:"delete_delivered"`
	// AckSweepInterval is RelayConfig.AckSweepInterval.
	AckSweepInterval time.Duration `yaml:"ack_sweep_interval"`
	// Mode is "poll" (claims from the table) or "cdc" (PostgreSQL logical
	// replication: postgres.NewCDC).
	Mode string `yaml:"mode"`
	// Slot is the CDC relay's replication slot (postgres.CDCConfig.Slot).
	Slot string `yaml:"slot"`
}

func (a *app) loadConfig() error {
	a.cfg = &fileConfig{}
	path := cmp.Or(a.flags.config, os.Getenv("OUTBOX_CONFIG"))
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return usageError("config: %v", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true)
		if err := dec.Decode(a.cfg); err != nil {
			if errors.Is(err, io.EOF) {
				return usageError("config %s: no settings (the file is empty or only comments)", path)
			}
			return usageError("config %s: %v", path, err)
		}
		// A second document would be silently ignored, typos included.
		if err := dec.Decode(&fileConfig{}); !errors.Is(err, io.EOF) {
			if err != nil {
				return usageError("config %s: second YAML document: %v", path, err)
			}
			return usageError("config %s: holds more than one YAML document: put every setting in the first", path)
		}
	}
	a.cfg.DBURL = cmp.Or(a.flags.dbURL, os.Getenv("OUTBOX_DB_URL"), a.cfg.DBURL)
	a.cfg.BrokerURL = cmp.Or(a.flags.brokerURL, os.Getenv("OUTBOX_BROKER_URL"), a.cfg.BrokerURL)
	a.cfg.Table = cmp.Or(a.flags.table, os.Getenv("OUTBOX_TABLE"), a.cfg.Table, "outbox")
	a.cfg.Schema = cmp.Or(a.flags.schema, os.Getenv("OUTBOX_SCHEMA"), a.cfg.Schema)
	return nil
}

// openOutbox opens the database named by the DB URL and returns the driver
// and an Outbox on it. Only the scheme picks the driver.
func (a *app) openOutbox(ctx context.Context) (outboxdriver.Driver, *outbox.Outbox, func(), error) {
	if a.cfg.DBURL == "" {
		return nil, nil, nil, usageError("no database: set --db-url or OUTBOX_DB_URL")
	}
	u, err := url.Parse(a.cfg.DBURL)
	if err != nil {
		return nil, nil, nil, usageError("--db-url is not a URL")
	}
	var drv outboxdriver.Driver
	var db *sql.DB
	if a.deleteDelivered && u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return nil, nil, nil, usageError("--delete-delivered: PostgreSQL only (the %s driver keeps delivered events)", u.Scheme)
	}
	if a.cdc && u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return nil, nil, nil, usageError("--mode cdc: PostgreSQL only (logical replication); the %s driver relays by polling", u.Scheme)
	}
	switch u.Scheme {
	case "postgres", "postgresql":
		db, err = sql.Open("postgres", a.cfg.DBURL)
		if err != nil {
			return nil, nil, nil, usageError("--db-url: %v", err)
		}
		pc := postgres.Config{Schema: a.cfg.Schema, Table: a.cfg.Table}
		if a.cfg.Notify {
			pc.NotifyDSN = a.cfg.DBURL
		}
		pc.DeleteDelivered = a.deleteDelivered
		if a.cdc {
			drv, err = postgres.NewCDC(db, pc, postgres.CDCConfig{ConnString: a.cfg.DBURL, Slot: a.cdcSlot})
		} else {
			drv, err = postgres.New(db, pc)
		}
	case "mysql":
		if a.cfg.Schema != "" {
			return nil, nil, nil, usageError("--schema: PostgreSQL only (MySQL has no schemas: name the database in --db-url)")
		}
		dsn, derr := mysql.DSNFromURL(a.cfg.DBURL)
		if derr != nil {
			return nil, nil, nil, usageError("--db-url: %v", derr)
		}
		db, err = mysql.Open(dsn)
		if err != nil {
			return nil, nil, nil, &codedError{exitUsage, err}
		}
		drv, err = mysql.New(db, mysql.Config{Table: a.cfg.Table})
	case "sqlite":
		if a.cfg.Schema != "" {
			return nil, nil, nil, usageError("--schema: PostgreSQL only (a SQLite file has no schemas)")
		}
		path := u.Path
		if u.Host != "" { // sqlite://relative/path.db
			path = u.Host + u.Path
		}
		if path == "" {
			return nil, nil, nil, usageError("--db-url: want sqlite:///absolute/path.db or sqlite://relative/path.db")
		}
		db, err = sqlite.Open(path)
		if err != nil {
			return nil, nil, nil, &codedError{exitUsage, err}
		}
		drv, err = sqlite.New(db, sqlite.Config{Table: a.cfg.Table})
	default:
		return nil, nil, nil, usageError("--db-url scheme %q not supported (want postgres://, mysql:// or sqlite://)", u.Scheme)
	}
	if err != nil {
		db.Close()
		return nil, nil, nil, &codedError{exitUsage, err}
	}
	pctx, cancel := context.WithTimeout(ctx, a.flags.timeout)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, nil, nil, fmt.Errorf("cannot reach database %s: %w", outboxbroker.Redact(a.cfg.DBURL), err)
	}
	ob, err := outbox.New(drv, outbox.Config{})
	if err != nil {
		db.Close()
		return nil, nil, nil, err
	}
	return drv, ob, func() { db.Close() }, nil
}

var userinfoRe = regexp.MustCompile(`(://[^:/@\s]*:)([^@\s]*)@`)

// redactAll hides passwords of any URL inside an error message, but not the
// "user:password@" placeholders of the messages that say what a URL looks
// like.
func redactAll(s string) string {
	return userinfoRe.ReplaceAllStringFunc(s, func(m string) string {
		sub := userinfoRe.FindStringSubmatch(m)
		if sub[2] == "password" || sub[2] == "pass" {
			return m
		}
		return sub[1] + "xxxxx@"
	})
}

// oneLine folds a multi-line error message into one line.
func oneLine(s string) string {
	var parts []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, " ")
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

var dayRe = regexp.MustCompile(`^(\d+)d$`)

// parseAge parses a duration that may also be given in days ("7d").
func parseAge(s string) (time.Duration, error) {
	if m := dayRe.FindStringSubmatch(s); m != nil {
		n, _ := strconv.Atoi(m[1])
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (examples: 7d, 36h, 90m)", s)
	}
	return d, nil
}

// parseTime parses an RFC 3339 time or an age ("2h" = two hours ago).
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := parseAge(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor an age like 2h or 7d", s)
	}
	return time.Now().Add(-d), nil
}

// tableName is the driver's table as operators write it (schema.table),
// without the SQL quoting Driver.Table adds: for logs, metrics labels and
// JSON output.
func tableName(drv outboxdriver.Driver) string {
	return strings.NewReplacer(`"`, "", "`", "").Replace(drv.Table())
}
