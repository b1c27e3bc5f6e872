package outboxbroker_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxbroker"
)

func init() {
	outboxbroker.Register("testbroker", func(_ context.Context, u *url.URL, opts outboxbroker.Options) (*outboxbroker.Broker, error) {
		p := outboxbroker.NewParams(u)
		_ = p.Duration("timeout", time.Second, time.Millisecond)
		_ = p.Bool("flag", false)
		_ = p.Int("n", 1, 1, 10)
		_ = p.Enum("mode", "a", "a", "b")
		if err := p.Err(); err != nil {
			return nil, err
		}
		return &outboxbroker.Broker{Features: outboxbroker.Features{DedupSlot: opts.Addr}}, nil
	})
}

func TestOpen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("Registered", func(t *testing.T) {
		b, err := outboxbroker.Open(ctx, "TestBroker://h:1?timeout=2s&flag=true&n=3&mode=b", outboxbroker.Options{Addr: "127.0.0.1:9"})
		if err != nil {
			t.Fatal(err)
		}
		if b.Features.DedupSlot != "127.0.0.1:9" {
			t.Fatalf("options not passed: %+v", b.Features)
		}
		if err := b.Close(); err != nil {
			t.Fatalf("Close with nil CloseFunc: %v", err)
		}
	})

	t.Run("UnknownScheme", func(t *testing.T) {
		_, err := outboxbroker.Open(ctx, "pulsar://user:hunter2@h:1", outboxbroker.Options{})
		if !errors.Is(err, outboxbroker.ErrUnknownScheme) {
			t.Fatalf("err = %v", err)
		}
		if !strings.Contains(err.Error(), "testbroker") || strings.Contains(err.Error(), "hunter2") {
			t.Fatalf("error should list schemes and hide the password: %v", err)
		}
	})

	t.Run("Unparseable", func(t *testing.T) {
		_, err := outboxbroker.Open(ctx, "testbroker://u:p%zz@h", outboxbroker.Options{})
		if err == nil || strings.Contains(err.Error(), "p%zz") {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("BadParams", func(t *testing.T) {
		for q, param := range map[string]string{
			"timeout=fast": "timeout",
			"timeout=0s":   "timeout",
			"flag=maybe":   "flag",
			"n=11":         "n",
			"mode=c":       "mode",
			"typo=1":       "typo",
			"n=1&n=2":      "n",
		} {
			_, err := outboxbroker.Open(ctx, "testbroker://h?"+q, outboxbroker.Options{})
			var pe *outboxbroker.ParamError
			if !errors.As(err, &pe) || pe.Param != param {
				t.Errorf("%s: err = %v, want ParamError for %q", q, err, param)
			}
		}
	})

	t.Run("RegisterTwicePanics", func(t *testing.T) {
		defer func() {
			if recover() == nil {
				t.Fatal("no panic")
			}
		}()
		outboxbroker.Register("testbroker", func(context.Context, *url.URL, outboxbroker.Options) (*outboxbroker.Broker, error) {
			return nil, nil
		})
	})
}

func TestRedact(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"amqp://guest:guest@127.0.0.1:5672/":                  "amqp://guest:xxxxx@127.0.0.1:5672/",
		"nats://s3cr3tt0ken@127.0.0.1:4222":                   "nats://xxxxx@127.0.0.1:4222",
		"redis://:pw@127.0.0.1:6379/0":                        "redis://:xxxxx@127.0.0.1:6379/0",
		"kafka://h:9092?sasl_password=pw&topic=x":             "kafka://h:9092?sasl_password=xxxxx&topic=x",
		"kafka://h:9092?sasl_user=u&token=t&group=g":          "kafka://h:9092?group=g&sasl_user=u&token=xxxxx",
		"kafka://u:pw@h:9092?sasl_mechanism=PLAIN":            "kafka://u:xxxxx@h:9092?sasl_mechanism=PLAIN",
		"nats://h:4222?auth=tok&nkey_seed=S":                  "nats://h:4222?auth=xxxxx&nkey_seed=xxxxx",
		"memory://demo":                                       "memory://demo",
		"nats://127.0.0.1:4222?stream=S&ensure_stream=true":   "nats://127.0.0.1:4222?ensure_stream=true&stream=S",
		"amqps://u:p@h/vhost?auth_mechanism=PLAIN#frag-token": "amqps://u:xxxxx@h/vhost?auth_mechanism=PLAIN#xxxxx",
		// Unparseable: still redacted, still recognizable.
		"::not a url":                         "::not a url",
		"http://%zz@h":                        "http://xxxxx@h",
		"nats://tok@h:port":                   "nats://xxxxx@h:port",
		"amqp://u:s3cret@h:56x2/?password=pw": "amqp://u:xxxxx@h:56x2/?password=xxxxx",
	} {
		if got := outboxbroker.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDedupID(t *testing.T) {
	t.Parallel()
	for resend, want := range map[string]string{
		"": "ev", "1": "ev/resend-1", "42": "ev/resend-42", "999999999": "ev/resend-999999999",
		"0": "ev", "000": "ev", "1234567890": "ev", "-1": "ev", "1a": "ev", " 1": "ev", "\x1b[31m": "ev", "١": "ev",
	} {
		msg := message.NewMessage("ev", nil)
		if resend != "" {
			msg.Metadata.Set(outbox.MetadataResend, resend)
		}
		if got := outboxbroker.DedupID(msg); got != want {
			t.Errorf("outbox_resend %q: DedupID %q, want %q", resend, got, want)
		}
	}
}
