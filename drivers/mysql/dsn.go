package mysql

import (
	"database/sql"
	"fmt"
	"net"
	"net/url"
	"strings"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// ConfigureDSN returns dsn (go-sql-driver/mysql form, e.g.
// "user:pass@tcp(host:3306)/db") with the settings the driver needs:
//
//   - parseTime=true: DATETIME columns are read as time.Time. A DSN that
//     sets parseTime=false is rejected.
//   - loc=UTC: the outbox stores UTC in DATETIME(6) columns. A DSN that sets
//     loc to a zone with a non-zero offset (e.g. loc=Local on a machine not
//     in UTC) is rejected.
//   - interpolateParams=true unless the DSN sets interpolateParams
//     explicitly (or its charset forbids it): without it every parameterized
//     statement costs two round trips (prepare, execute), which is most of
//     an outbox insert's cost.
//
// Errors wrap outboxdriver.ErrInvalidConfig and name the offending setting.
func ConfigureDSN(dsn string) (string, error) {
	cfg, err := gomysql.ParseDSN(dsn)
	if err != nil {
		return "", fmt.Errorf("%w: mysql: DSN: %w", outboxdriver.ErrInvalidConfig, err)
	}
	params := dsnParams(dsn)
	if v, ok := params["parseTime"]; ok && !cfg.ParseTime {
		return "", fmt.Errorf("%w: mysql: DSN sets parseTime=%s; outboxkit needs parseTime=true", outboxdriver.ErrInvalidConfig, v)
	}
	cfg.ParseTime = true
	if cfg.Loc == nil || !isUTC(cfg.Loc) {
		return "", fmt.Errorf("%w: mysql: DSN sets loc=%s; outboxkit needs loc=UTC (it stores UTC in DATETIME columns)",
			outboxdriver.ErrInvalidConfig, params["loc"])
	}
	if _, ok := params["interpolateParams"]; !ok {
		cfg.InterpolateParams = !unsafeForInterpolation(params["charset"], cfg.Collation)
	}
	return cfg.FormatDSN(), nil
}

// Open opens a database handle for dsn after ConfigureDSN. It does not
// connect; use Driver.Ping for that.
func Open(dsn string) (*sql.DB, error) {
	configured, err := ConfigureDSN(dsn)
	if err != nil {
		return nil, err
	}
	return sql.Open("mysql", configured)
}

// unsafeForInterpolation reports whether the connection charset or
// collation is one of the multibyte encodings client-side interpolation
// cannot escape safely (go-sql-driver/mysql's documented list).
func unsafeForInterpolation(charsets, collation string) bool {
	for _, cs := range append(strings.Split(charsets, ","), collation) {
		cs = strings.ToLower(cs)
		for _, bad := range []string{"big5", "cp932", "gb2312", "gbk", "sjis"} {
			if cs == bad || strings.HasPrefix(cs, bad+"_") {
				return true
			}
		}
	}
	return false
}

// dsnParams returns the raw parameters of a DSN (after its last '?'), to
// tell a setting the user wrote from a default.
func dsnParams(dsn string) map[string]string {
	out := map[string]string{}
	i := strings.LastIndexByte(dsn, '?')
	if i < 0 || strings.LastIndexByte(dsn, '/') > i {
		return out
	}
	for _, kv := range strings.Split(dsn[i+1:], "&") {
		k, v, _ := strings.Cut(kv, "=")
		out[k] = v
	}
	return out
}

// DSNFromURL converts a URL of the form
// mysql://user:password@host:3306/database?param=value (port 3306 when
// omitted) into go-sql-driver/mysql's DSN form,
// user:password@tcp(host:3306)/database?param=value, for tools that take
// every database as a URL. Pass the result to ConfigureDSN or Open.
func DSNFromURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "mysql" {
		return "", fmt.Errorf("%w: want mysql://user:password@host:3306/database", outboxdriver.ErrInvalidConfig)
	}
	db := strings.TrimPrefix(u.Path, "/")
	if u.Host == "" || db == "" {
		return "", fmt.Errorf("%w: want mysql://user:password@host:3306/database", outboxdriver.ErrInvalidConfig)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "3306")
	}
	var auth string
	if u.User != nil {
		auth = u.User.Username()
		if pw, ok := u.User.Password(); ok {
			auth += ":" + pw
		}
		auth += "@"
	}
	dsn := auth + "tcp(" + host + ")/" + db
	if u.RawQuery != "" {
		dsn += "?" + u.RawQuery
	}
	return dsn, nil
}
