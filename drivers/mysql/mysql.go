// Package mysql is the MySQL and MariaDB driver of outboxkit. It works
// through database/sql with github.com/go-sql-driver/mysql (imported and
// registered as "mysql") on MySQL 8.0.1 or newer and MariaDB 10.6 or newer:
// the first releases with FOR UPDATE SKIP LOCKED.
//
// The connection must return DATETIME columns as time.Time in UTC
// (parseTime=true, loc=UTC); Open and ConfigureDSN set both, and Ping and
// MigrateUp check them and the server version.
//
// Every relay-side statement runs in a READ COMMITTED transaction, so it
// takes record locks only (no gap or next-key locks) and an application
// INSERT into the outbox never waits for a relay, whatever isolation level
// the application or the server defaults to. The driver has one claim
// protocol, held claims (outboxdriver.HeldClaimer): a batch's rows stay
// locked (FOR UPDATE SKIP LOCKED) and its keys named-locked (GET_LOCK, the
// counterpart of PostgreSQL's advisory locks) on one connection while the
// batch is published, and its outcome is written in the same transaction.
// Claims scan by status (no offset, so rows committed out of seq order are
// never skipped) and keep per-key order with any number of relays. Its
// statements are the embedded queries/*.sql files, rendered once for the
// table in New.
package mysql

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"time"

	gomysql "github.com/go-sql-driver/mysql" // also registers the "mysql" database/sql driver

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// DefaultTable is the default Config.Table.
const DefaultTable = "outbox"

// maxTableLen keeps the companion table <table>_migrations (and
// <table>_relay_lock, which schema version 1 creates and version 3 drops:
// the same length) under MySQL's 64-character identifier limit.
const maxTableLen = 64 - len("_migrations")

// Config configures the MySQL driver.
type Config struct {
	// Table is the outbox table name, in the connection's database. Empty
	// means "outbox". It must match ^[A-Za-z_][A-Za-z0-9_]{0,52}$: the
	// migrations also create <Table>_migrations, and MySQL identifiers are
	// at most 64 characters.
	Table string
}

// ErrUnsupportedServer is returned by Ping and MigrateUp when the server is
// older than MySQL 8.0.1 or MariaDB 10.6, which lack FOR UPDATE SKIP LOCKED.
var ErrUnsupportedServer = errors.New("outbox: unsupported MySQL/MariaDB server")

// ErrConnectionSettings is returned by Ping and MigrateUp when the
// connection does not return DATETIME values as time.Time in UTC: the DSN
// needs parseTime=true and loc=UTC (see ConfigureDSN).
var ErrConnectionSettings = errors.New("outbox: MySQL connection settings")

// Driver implements outboxdriver.Driver for MySQL and MariaDB.
type Driver struct {
	db        *sql.DB
	cfg       Config
	table     string // quoted
	lockTable string // quoted; only migrations 001 (creates) and 003 (drops) name it
	verTable  string // quoted
	ackTable  string // quoted <table>_acks
	queries   queries
	listTmpl  *template.Template // queries/list.sql.tmpl
	insertN1  string

	prefixMu sync.Mutex
	prefix   string // GET_LOCK name prefix of the held claim (keyLockPrefix)

	checkMu sync.Mutex
	checked bool
}

var _ outboxdriver.Driver = (*Driver)(nil)

// New returns a driver using db. It checks the configuration only; it does
// not connect (see Ping) nor create the table (see MigrateUp). db should be
// opened with Open, or with a DSN that ConfigureDSN accepts.
func New(db *sql.DB, cfg Config) (*Driver, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: mysql: db must not be nil", outboxdriver.ErrInvalidConfig)
	}
	cfg.Table = cmp.Or(cfg.Table, DefaultTable)
	if err := outboxdriver.ValidateIdentifier("mysql.Config.Table", cfg.Table); err != nil {
		return nil, err
	}
	if len(cfg.Table) > maxTableLen {
		return nil, fmt.Errorf("%w: mysql.Config.Table %q is longer than %d bytes (companion tables add a suffix; MySQL identifiers are at most 64)",
			outboxdriver.ErrInvalidConfig, cfg.Table, maxTableLen)
	}
	d := &Driver{
		db:        db,
		cfg:       cfg,
		table:     quote(cfg.Table),
		lockTable: quote(cfg.Table + "_relay_lock"),
		verTable:  quote(cfg.Table + "_migrations"),
		ackTable:  quote(cfg.Table + "_acks"),
	}
	if err := d.loadQueries(); err != nil {
		return nil, err
	}
	d.insertN1 = insertSQL(d.table, 1)
	return d, nil
}

// Ping checks that the database is reachable, that the server and the
// connection settings are supported, and that the table is migrated,
// returning an error that says which is wrong.
func (d *Driver) Ping(ctx context.Context) error {
	if err := d.db.PingContext(ctx); err != nil {
		return fmt.Errorf("mysql: cannot reach database: %w", err)
	}
	if err := d.checkServer(ctx); err != nil {
		return err
	}
	st, err := d.MigrateStatus(ctx, &outboxdriver.MigrateStatusParams{})
	if err != nil {
		return err
	}
	if len(st.Pending) > 0 {
		return fmt.Errorf("mysql: schema versions %v of %s not applied: %w", st.Pending, d.table, outboxdriver.ErrNotMigrated)
	}
	var n int
	err = d.db.QueryRowContext(ctx, "SELECT 1 FROM "+d.table+" LIMIT 1").Scan(&n)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return interpretError(err)
	}
	return nil
}

// DB implements outboxdriver.Driver.
func (d *Driver) DB() *sql.DB { return d.db }

// Name implements outboxdriver.Driver.
func (d *Driver) Name() string { return "mysql" }

// Table implements outboxdriver.Driver.
func (d *Driver) Table() string { return d.table }

func quote(ident string) string { return "`" + ident + "`" }

// checkServer verifies once per driver (until it succeeds) the server
// version and that DATETIME values come back as time.Time in UTC.
func (d *Driver) checkServer(ctx context.Context) error {
	d.checkMu.Lock()
	defer d.checkMu.Unlock()
	if d.checked {
		return nil
	}
	var version string
	var probe any
	err := d.db.QueryRowContext(ctx, "SELECT VERSION(), CAST('2000-01-01 00:00:00' AS DATETIME(6))").Scan(&version, &probe)
	if err != nil {
		return fmt.Errorf("mysql: read server version: %w", interpretError(err))
	}
	if err := checkVersion(version); err != nil {
		return err
	}
	switch v := probe.(type) {
	case time.Time:
		if !isUTC(v.Location()) {
			return fmt.Errorf("%w: DATETIME values are read in time zone %q; set loc=UTC in the DSN (see ConfigureDSN)",
				ErrConnectionSettings, v.Location())
		}
	default:
		return fmt.Errorf("%w: DATETIME values are read as %T, not time.Time; set parseTime=true in the DSN (see ConfigureDSN)",
			ErrConnectionSettings, probe)
	}
	d.checked = true
	return nil
}

func isUTC(loc *time.Location) bool {
	for _, t := range []time.Time{time.Date(2000, 1, 1, 0, 0, 0, 0, loc), time.Date(2000, 7, 1, 0, 0, 0, 0, loc)} {
		if _, off := t.Zone(); off != 0 {
			return false
		}
	}
	return true
}

// checkVersion accepts MySQL >= 8.0.1 and MariaDB >= 10.6 from a VERSION()
// string such as "8.0.36" or "10.11.6-MariaDB-0+deb12u1".
func checkVersion(v string) error {
	raw := v
	maria := strings.Contains(strings.ToLower(v), "mariadb")
	// Old MariaDB clients and proxies report "5.5.5-10.x.y-MariaDB".
	v = strings.TrimPrefix(v, "5.5.5-")
	parts := strings.SplitN(v, ".", 3)
	nums := make([]int, 3)
	for i := range parts {
		digits := parts[i]
		if j := strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }); j >= 0 {
			digits = digits[:j]
		}
		n, err := strconv.Atoi(digits)
		if err != nil {
			if i == 0 {
				return fmt.Errorf("%w: cannot parse server version %q", ErrUnsupportedServer, raw)
			}
			break
		}
		nums[i] = n
	}
	less := func(a, b, c int) bool {
		if nums[0] != a {
			return nums[0] < a
		}
		if nums[1] != b {
			return nums[1] < b
		}
		return nums[2] < c
	}
	if maria {
		if less(10, 6, 0) {
			return fmt.Errorf("%w: MariaDB %s is older than 10.6 (no FOR UPDATE SKIP LOCKED)", ErrUnsupportedServer, raw)
		}
		return nil
	}
	if less(8, 0, 1) {
		return fmt.Errorf("%w: MySQL %s is older than 8.0.1 (no FOR UPDATE SKIP LOCKED)", ErrUnsupportedServer, raw)
	}
	return nil
}

// MySQL server error numbers interpretError knows.
const (
	erNoSuchTable      = 1146
	erDupKeyName       = 1061
	erBadDB            = 1049
	erNetPacketTooLarg = 1153
	erLockWaitTimeout  = 1205
	erParseError       = 1064
	erBinlogStmtMode   = 1665 // READ COMMITTED DML with binlog_format=STATEMENT
)

// interpretError is the one place MySQL errors become outbox errors.
func interpretError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return outboxdriver.ErrNotFound
	}
	var me *gomysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case erNoSuchTable:
			return fmt.Errorf("%w: %w", outboxdriver.ErrNotMigrated, err)
		case erBadDB:
			return fmt.Errorf("mysql: the DSN's database does not exist: %w", err)
		case erNetPacketTooLarg:
			return fmt.Errorf("mysql: statement larger than the server's max_allowed_packet (raise it, or insert fewer or smaller events per call): %w", err)
		case erLockWaitTimeout:
			return fmt.Errorf("mysql: lock wait timeout (innodb_lock_wait_timeout): %w", err)
		case erBinlogStmtMode:
			return fmt.Errorf("%w: relay statements run at READ COMMITTED, which needs binlog_format=ROW or MIXED: %w", ErrUnsupportedServer, err)
		case erParseError:
			if strings.Contains(me.Message, "SKIP LOCKED") || strings.Contains(me.Message, "LOCKED") {
				return fmt.Errorf("%w: the server does not understand FOR UPDATE SKIP LOCKED (needs MySQL 8.0.1+ or MariaDB 10.6+): %w", ErrUnsupportedServer, err)
			}
		}
		return err
	}
	// database/sql's conversion error when parseTime is off.
	if msg := err.Error(); strings.Contains(msg, "unsupported Scan") && strings.Contains(msg, "time.Time") {
		return fmt.Errorf("%w: set parseTime=true in the DSN (see ConfigureDSN): %w", ErrConnectionSettings, err)
	}
	return err
}
