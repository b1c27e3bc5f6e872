package bench

import (
	"cmp"
	"context"
	"errors"
	"net/url"
	"time"

	"github.com/nats-io/nats.go"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"
)

// KfakeScheme is the bench's own broker URL scheme: kfake:// starts an
// in-process Kafka (github.com/twmb/franz-go/pkg/kfake, the fake the tests
// use) for the run and points the relays at it with kafka://.
const KfakeScheme = "kfake"

// prepareBroker sets the broker URL the bench and its relays use and the
// topic prefix of the run. For NATS the bench creates its own stream
// (emptied between reps, deleted at the end); kfake:// starts an
// in-process Kafka; other brokers get fresh topic names.
func (r *run) prepareBroker(_ context.Context) error {
	u, err := url.Parse(r.cell.BrokerURL)
	if err != nil {
		return errors.New("broker URL is not a URL")
	}
	r.scheme = u.Scheme
	sep := "_"
	r.brokerURL = r.cell.BrokerURL
	switch u.Scheme {
	case "memory":
		return errors.New("memory:// lives inside one process; the bench runs the relay in its own process: use a real broker")
	case KfakeScheme:
		addr, stop, err := startKfake()
		if err != nil {
			return err
		}
		r.cleanups = append(r.cleanups, stop)
		r.brokerURL = "kafka://" + addr
	case "nats":
		q := u.Query()
		if q.Has("stream") || q.Has("ensure_stream") {
			return errors.New("broker URL: outbox bench creates and deletes its own NATS stream: drop the stream and ensure_stream parameters")
		}
		sep = "."
		stream := "OUTBOXBENCH_" + r.id
		q.Set("stream", stream)
		q.Set("subjects", "outboxbench_"+r.id+".>")
		q.Set("ensure_stream", "true")
		u.RawQuery = q.Encode()
		r.brokerURL = u.String()
		base := *u
		base.RawQuery = ""
		r.cleanups = append(r.cleanups, func() { natsStream(base.String(), stream, true) })
		r.purge = func() { natsStream(base.String(), stream, false) }
		// Outside the stream's subjects: JetStream has no responder for it
		// and refuses every publish at once ("no responders").
		r.poisonTo = "outboxbench_" + r.id + "_poison"
	}
	r.prefix = "outboxbench_" + r.id + sep
	switch u.Scheme {
	case "amqp", "amqps", "redis", "rediss":
		// Fresh topics each rep; the messages they hold are removed after
		// the rep and at the end.
		q := u.Query()
		base := *u
		base.RawQuery = ""
		r.purge = func() { r.dropTopics(u.Scheme, base.String(), cmp.Or(q.Get("group"), "outbox")) }
		r.cleanups = append(r.cleanups, r.purge)
	}
	return nil
}

// topic returns the run's topic named name and records it for dropTopics.
func (r *run) topic(name string) string {
	t := r.prefix + name
	r.topics = append(r.topics, t)
	return t
}

// dropTopics deletes what the recorded topics left on the broker: the
// queues the AMQP publisher declared (group.topic), or the Redis streams.
func (r *run) dropTopics(scheme, baseURL, group string) {
	topics := r.topics
	r.topics = nil
	if len(topics) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch scheme {
	case "amqp", "amqps":
		conn, err := amqp091.Dial(baseURL)
		if err != nil {
			return
		}
		defer conn.Close()
		for _, t := range topics {
			// A channel closes on the first error (a queue never declared).
			ch, err := conn.Channel()
			if err != nil {
				return
			}
			_, _ = ch.QueueDelete(group+"."+t, false, false, false)
			_ = ch.Close()
		}
	case "redis", "rediss":
		opts, err := redis.ParseURL(baseURL)
		if err != nil {
			return
		}
		c := redis.NewClient(opts)
		defer c.Close()
		_ = c.Del(ctx, topics...).Err()
	}
}

// natsStream deletes the bench's stream and the messages it stored, or
// only purges its messages.
func natsStream(serverURL, stream string, remove bool) {
	nc, err := nats.Connect(serverURL, nats.Timeout(5*time.Second))
	if err != nil {
		return
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if remove {
		_ = js.DeleteStream(stream, nats.Context(ctx))
		return
	}
	_ = js.PurgeStream(stream, nats.Context(ctx))
}
