package bench

import (
	"context"
	"errors"
	"net/url"
	"time"

	"github.com/nats-io/nats.go"
)

// topics are the broker topics of one cell's phases.
type topics struct {
	drain, multi, latency, raw, forwarded string
}

// prepareBroker returns the broker URL the bench and its relays use, and the
// topics of each phase. For NATS the bench creates its own stream (deleted
// at the end); other brokers get fresh topic names.
func (r *run) prepareBroker() (string, topics, error) {
	u, err := url.Parse(r.cell.BrokerURL)
	if err != nil {
		return "", topics{}, errors.New("broker URL is not a URL")
	}
	sep := "_"
	brokerURL := r.cell.BrokerURL
	if u.Scheme == "memory" {
		return "", topics{}, errors.New("memory:// lives inside one process; the bench runs the relay in its own process: use a real broker")
	}
	if u.Scheme == "nats" {
		q := u.Query()
		if q.Has("stream") || q.Has("ensure_stream") {
			return "", topics{}, errors.New("broker URL: outbox bench creates and deletes its own NATS stream: drop the stream and ensure_stream parameters")
		}
		sep = "."
		stream := "OUTBOXBENCH_" + r.id
		q.Set("stream", stream)
		q.Set("subjects", "outboxbench_"+r.id+".>")
		q.Set("ensure_stream", "true")
		u.RawQuery = q.Encode()
		brokerURL = u.String()
		base := *u
		base.RawQuery = ""
		r.cleanups = append(r.cleanups, func() { deleteNATSStream(base.String(), stream) })
	}
	p := "outboxbench_" + r.id + sep
	return brokerURL, topics{drain: p + "drain", multi: p + "multi", latency: p + "latency", raw: p + "raw", forwarded: p + "forwarded"}, nil
}

// deleteNATSStream removes the bench's stream and the messages it stored.
func deleteNATSStream(serverURL, stream string) {
	nc, err := nats.Connect(serverURL, nats.Timeout(5*time.Second))
	if err != nil {
		return
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = js.DeleteStream(stream, nats.Context(ctx))
}
