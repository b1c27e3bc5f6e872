package conformance

import (
	"database/sql"
	"strings"

	"github.com/outboxkit/outboxkit/drivers/mysql"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

// MySQL returns the database side of a cell for drivers/mysql
// (go-sql-driver/mysql; MySQL 8 or MariaDB >= 10.6) at outboxtest.MySQLDSN
// (OUTBOX_TEST_MYSQL_DSN), with the DSN settings mysql.ConfigureDSN adds.
func MySQL() Database {
	raw := outboxtest.MySQLDSN()
	dsn, err := mysql.ConfigureDSN(raw)
	if err != nil {
		dsn = raw // NewDriver/Open will report it
	}
	addr := outboxtest.ServiceAddr(outboxtest.MySQL)
	return Database{
		Name:       "mysql",
		Services:   []string{outboxtest.MySQL},
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
			_, err := db.Exec("DROP TABLE IF EXISTS `" + table + "`, `" + table + "_migrations`, `" + table + "_relay_lock`")
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
