package outbox

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
)

func TestRelayConfigValidation(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		cfg   RelayConfig
		field string
	}{
		"batch too large":      {RelayConfig{BatchSize: 10001}, "BatchSize"},
		"batch negative":       {RelayConfig{BatchSize: -1}, "BatchSize"},
		"lease too short":      {RelayConfig{LeaseDuration: time.Millisecond}, "LeaseDuration"},
		"max attempts":         {RelayConfig{MaxAttempts: -2}, "MaxAttempts"},
		"backoff max < min":    {RelayConfig{BackoffMin: time.Minute, BackoffMax: time.Second}, "BackoffMax"},
		"poll interval":        {RelayConfig{PollInterval: time.Microsecond}, "PollInterval"},
		"min poll interval":    {RelayConfig{MinPollInterval: time.Microsecond}, "MinPollInterval"},
		"concurrency":          {RelayConfig{Concurrency: 65}, "Concurrency"},
		"negative publish ttl": {RelayConfig{PublishTimeout: -time.Second}, "PublishTimeout"},
		"unknown publish path": {RelayConfig{Publish: "batch"}, "Publish"},
		"ack sweep too short":  {RelayConfig{AckSweepInterval: time.Microsecond}, "AckSweepInterval"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			err := c.cfg.withDefaults().validate()
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.field) {
				t.Fatalf("want ErrInvalidConfig naming %s, got %v", c.field, err)
			}
		})
	}
	t.Run("defaults are valid", func(t *testing.T) {
		t.Parallel()
		cfg := RelayConfig{}.withDefaults()
		if err := cfg.validate(); err != nil {
			t.Fatal(err)
		}
		if cfg.BatchSize != 500 || cfg.Concurrency != 2 || cfg.Publish != PublishDirect || cfg.MaxAttempts != 30 || cfg.ID == "" || cfg.LeaseDuration != 30*time.Second {
			t.Fatalf("defaults: %+v", cfg)
		}
	})
	t.Run("nil driver and publisher", func(t *testing.T) {
		t.Parallel()
		if _, err := NewRelay(nil, gochannel.NewGoChannel(gochannel.Config{}, nil), RelayConfig{}); !errors.Is(err, ErrInvalidConfig) {
			t.Fatalf("nil driver: %v", err)
		}
		if _, err := New(nil, Config{}); !errors.Is(err, ErrInvalidConfig) {
			t.Fatalf("nil driver: %v", err)
		}
	})
	t.Run("negative payload limit", func(t *testing.T) {
		t.Parallel()
		if err := (Config{MaxPayloadBytes: -1}).withDefaults().validate(); !errors.Is(err, ErrInvalidConfig) ||
			!strings.Contains(err.Error(), "MaxPayloadBytes") {
			t.Fatalf("got %v", err)
		}
	})
}
