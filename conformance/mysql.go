package conformance

import (
	"database/sql"
	"strings"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/outboxkit/outboxkit/drivers/mysql"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

// MySQL returns the database side of a cell for drivers/mysql
// (go-sql-driver/mysql; MySQL 8 or MariaDB >= 10.6) at outboxtest.MySQLDSN
// (OUTBOX_TEST_MYSQL_DSN), with the DSN settings mysql.ConfigureDSN adds.
func MySQL() Database {
	db := MySQLAt(outboxtest.MySQLDSN())
	db.Services = []string{outboxtest.MySQL}
	return db
}

// MySQLAt is MySQL for the database at dsn (go-sql-driver/mysql form,
// user:password@tcp(host:3306)/db). It names no Services: the caller
// checks that the server is reachable.
func MySQLAt(raw string) Database {
	dsn, err := mysql.ConfigureDSN(raw)
	if err != nil {
		dsn = raw // NewDriver/Open will report it
	}
	addr := "127.0.0.1:3306"
	if cfg, err := gomysql.ParseDSN(dsn); err == nil && cfg.Net == "tcp" {
		addr = cfg.Addr
	}
	return Database{
		Name:       "mysql",
		DriverName: "mysql",
		DSN:        dsn,
		Addr:       addr,
		DSNVia: func(via string) string {
			return strings.Replace(dsn, "tcp("+addr+")", "tcp("+via+")", 1) + dsnSep(dsn) + "timeout=5s"
		},
		NewDriver: func(db *sql.DB, table string) (outboxdriver.Driver, error) {
			return mysql.New(db, mysql.Config{Table: table})
		},
		DropTable: func(db *sql.DB, table string) error {
			_, err := db.Exec("DROP TABLE IF EXISTS `" + table + "`, `" + table + "_migrations`, `" + table + "_relay_lock`, `" + table + "_acks`")
			return err
		},
		LockTimeout: "SET SESSION innodb_lock_wait_timeout = 1",
	}
}

func dsnSep(dsn string) string {
	if strings.Contains(dsn, "?") {
		return "&"
	}
	return "?"
}
