package conformance

import (
	"errors"
	"fmt"
	"net"
	"net/url"

	"github.com/outboxkit/outboxkit/drivers/mysql"
)

// ErrUnsupportedURL is returned (wrapped) by HarnessFromURLs for a database
// or broker URL whose scheme the suite cannot run against.
var ErrUnsupportedURL = errors.New("conformance: unsupported URL")

// HarnessFromURLs builds the cell for a database URL and a broker URL in
// the forms the outbox CLI takes:
//
//	postgres://user:password@host:5432/db?sslmode=disable   (or postgresql://)
//	mysql://user:password@host:3306/db                      (MySQL 8, MariaDB >= 10.6)
//	sqlite:///absolute/path.db or sqlite://relative/path.db
//
//	nats://host:4222   amqp://user:password@host:5672/vhost   redis://host:6379/0
//	kafka://host:9092[,host:9092...]   memory://
//
// Broker query parameters are ignored: every test declares a stream,
// exchange and queue, Redis stream or Kafka topic (KafkaAt) of its own, named
// after the test, and deletes it at the end. Every test also creates and
// drops its own outbox table (conf_...) in the database. The cell runs at full counts
// (Light false); testing.Short() (-short) selects the small counts.
//
// The result names no Services: the caller checks reachability (Run would
// otherwise fail the tests with connection errors). The error wraps
// ErrUnsupportedURL for an unknown scheme, and says which URL is wrong.
func HarnessFromURLs(dbURL, brokerURL string) (Harness, error) {
	db, err := databaseFromURL(dbURL)
	if err != nil {
		return Harness{}, err
	}
	b, err := brokerFromURL(brokerURL)
	if err != nil {
		return Harness{}, err
	}
	return Harness{Name: db.Name + "_" + b.Name, Database: db, Broker: b}, nil
}

func databaseFromURL(raw string) (Database, error) {
	if raw == "" {
		return Database{}, fmt.Errorf("conformance: no database URL")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Database{}, fmt.Errorf("conformance: database URL is not a URL")
	}
	switch u.Scheme {
	case "postgres", "postgresql":
		return PostgresAt(raw), nil
	case "mysql":
		dsn, err := mysql.DSNFromURL(u.String())
		if err != nil {
			return Database{}, err
		}
		return MySQLAt(dsn), nil
	case "sqlite":
		path := u.Path
		if u.Host != "" { // sqlite://relative/path.db
			path = u.Host + u.Path
		}
		if path == "" {
			return Database{}, fmt.Errorf("conformance: database URL: want sqlite:///absolute/path.db or sqlite://relative/path.db")
		}
		return SQLite(path), nil
	}
	return Database{}, fmt.Errorf("%w: database scheme %q (want postgres://, mysql:// or sqlite://)", ErrUnsupportedURL, u.Scheme)
}

func brokerFromURL(raw string) (Broker, error) {
	if raw == "" {
		return Broker{}, fmt.Errorf("conformance: no broker URL")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Broker{}, fmt.Errorf("conformance: broker URL is not a URL")
	}
	switch u.Scheme {
	case "nats":
		return NATSAt(raw), nil
	case "amqp", "amqps":
		return AMQPAt(raw), nil
	case "redis", "rediss":
		return RedisStreamAt(raw), nil
	case "memory":
		return Memory(), nil
	case "kafka":
		if u.Host == "" {
			return Broker{}, fmt.Errorf("conformance: broker URL: want kafka://host:9092[,host:9092...]")
		}
		return KafkaAt(raw), nil
	}
	return Broker{}, fmt.Errorf("%w: broker scheme %q (want nats://, amqp://, redis://, kafka:// or memory://)", ErrUnsupportedURL, u.Scheme)
}

// baseURL drops the query of a broker URL and returns it with the server's
// host:port (defPort when the URL names none).
func baseURL(raw, defPort string) (base, addr string) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return raw, ""
	}
	u.RawQuery = ""
	addr = u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), defPort)
	}
	return u.String(), addr
}

// withHost returns raw dialing addr (host:port) instead of its own host,
// keeping its credentials and path.
func withHost(raw, addr string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.Host = addr
	return u.String()
}
