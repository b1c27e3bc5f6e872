package bench

import (
	"reflect"
	"testing"
)

func TestStatOf(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want Stat
	}{
		{[]float64{3}, Stat{Median: 3, Min: 3, Max: 3, Values: []float64{3}}},
		{[]float64{5, 1, 3}, Stat{Median: 3, Min: 1, Max: 5, Values: []float64{5, 1, 3}}},
		{[]float64{4, 1, 2, 10}, Stat{Median: 3, Min: 1, Max: 10, Values: []float64{4, 1, 2, 10}}},
	} {
		if got := statOf(tc.in); !reflect.DeepEqual(*got, tc.want) {
			t.Errorf("statOf(%v) = %+v, want %+v", tc.in, *got, tc.want)
		}
	}
	if statOf(nil) != nil {
		t.Error("statOf(nil) is not nil")
	}
}

func TestInFlight(t *testing.T) {
	for name, tc := range map[string]struct {
		cfg      Config
		settings map[string]any
		want     int
	}{
		"logged max_in_flight":  {Config{Keys: 1000}, map[string]any{"max_in_flight": 640.0, "batch_size": 500.0}, 640},
		"batch from the log":    {Config{Keys: 1000}, map[string]any{"batch_size": 500.0}, 500},
		"batch × concurrency":   {Config{Keys: 1000, RelayFlags: []string{"--concurrency=2"}}, map[string]any{"batch_size": 300.0}, 600},
		"capped at the keys":    {Config{Keys: 1000, RelayFlags: []string{"--concurrency", "4"}}, map[string]any{"batch_size": 500.0}, 1000},
		"logged concurrency":    {Config{Keys: 1000}, map[string]any{"batch_size": 100.0, "concurrency": 3.0}, 300},
		"--in-flight wins":      {Config{Keys: 1000, InFlight: 7}, map[string]any{"batch_size": 500.0}, 7},
		"nothing logged":        {Config{Keys: 1000, BatchSize: 200}, nil, 200},
		"hostile logged values": {Config{Keys: 1000}, map[string]any{"max_in_flight": "lots", "batch_size": -5.0}, 100},
	} {
		r := &run{cfg: tc.cfg, settings: tc.settings}
		if got, src := r.inFlight(); got != tc.want || src == "" {
			t.Errorf("%s: inFlight() = %d (%q), want %d", name, got, src, tc.want)
		}
	}
}

func TestFormatCreatedAt(t *testing.T) {
	if got := formatCreatedAt([]byte("2026-12-03 14:00:01.123456")); got != "2026-12-03T14:00:01.123456Z" {
		t.Errorf("MySQL text: %q", got)
	}
	if got := formatCreatedAt(nil); got != "" {
		t.Errorf("nil: %q", got)
	}
}

func TestMinimalRelayRefusesBadInput(t *testing.T) {
	for _, m := range []MinimalRelay{
		{Dialect: "postgres", Table: `t"; DROP TABLE x; --`},
		{Dialect: "postgres", Table: "Outbox"},
		{Dialect: "sqlite", Table: "outbox"},
		{Dialect: "postgres", Table: "outbox", Batch: -1},
	} {
		if err := m.Run(t.Context()); err == nil {
			t.Errorf("%+v: no error", m)
		}
	}
}
