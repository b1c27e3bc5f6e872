package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"net/url"
	"strings"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outboxkit/framework/outboxbroker"
)

// Features is what a Kafka broker promises.
var Features = outboxbroker.Features{
	NativeDedup: false,
	DedupSlot:   "record headers outbox_event_id and _watermill_message_uuid (idempotent producer dedups only its own retries)",
	PerKeyOrder: true,
	OrderScope:  "per partition; the event key picks the partition",
	Subscriber:  true,
	Durable:     true,
}

func init() { outboxbroker.Register("kafka", open) }

// open serves kafka://[user:pass@]host:port?params. Parameters:
//
//	brokers          more bootstrap brokers, comma-separated host:port
//	group            consumer group (default "outbox")
//	client_id        (default "outboxkit")
//	version          Kafka protocol version, e.g. 2.1.0 (default 2.1.0)
//	idempotent       (default true)
//	from_newest      new consumer groups start at the end (default false)
//	tls              enable TLS with system roots (default false)
//	sasl_mechanism   PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; the user and
//	                 password come from the URL's userinfo
func open(_ context.Context, u *url.URL, opts outboxbroker.Options) (*outboxbroker.Broker, error) {
	p := outboxbroker.NewParams(u)
	cfg := Config{
		Brokers:            []string{u.Host},
		ConsumerGroup:      p.String("group", opts.ConsumerGroup),
		ClientID:           p.String("client_id", ""),
		DisableIdempotence: !p.Bool("idempotent", true),
		FromNewest:         p.Bool("from_newest", false),
		Logger:             opts.Logger,
	}
	if extra := p.String("brokers", ""); extra != "" {
		cfg.Brokers = append(cfg.Brokers, strings.Split(extra, ",")...)
	}
	if v := p.String("version", ""); v != "" {
		ver, err := sarama.ParseKafkaVersion(v)
		if err != nil {
			return nil, &outboxbroker.ParamError{Param: "version", Reason: "want a Kafka version like 2.1.0"}
		}
		cfg.Version = ver
	}
	if p.Bool("tls", false) {
		cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: u.Hostname()}
	}
	cfg.SASL.Mechanism = p.Enum("sasl_mechanism", "", sarama.SASLTypePlaintext, sarama.SASLTypeSCRAMSHA256, sarama.SASLTypeSCRAMSHA512)
	if err := p.Err(); err != nil {
		return nil, err
	}
	if u.User != nil {
		if cfg.SASL.Mechanism == "" {
			return nil, &outboxbroker.ParamError{Param: "sasl_mechanism", Reason: "the URL has credentials but no sasl_mechanism"}
		}
		cfg.SASL.User = u.User.Username()
		cfg.SASL.Password, _ = u.User.Password()
	}
	if opts.Addr != "" {
		cfg.Brokers = []string{opts.Addr}
	}
	if u.Host == "" && opts.Addr == "" {
		return nil, errors.New("kafka: URL has no host:port")
	}
	return outboxbroker.NewBroker(Features,
		func() (message.Publisher, error) { return NewPublisher(cfg) },
		func() (message.Subscriber, error) { return NewSubscriber(cfg) })
}
