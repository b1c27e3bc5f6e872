package backoff

import (
	"testing"
	"time"
)

func TestDelay(t *testing.T) {
	t.Parallel()
	p := Policy{Min: time.Second, Max: time.Minute}

	t.Run("grows exponentially within jitter bounds", func(t *testing.T) {
		t.Parallel()
		for attempt, ceiling := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 6: 32 * time.Second} {
			for range 200 {
				d := p.Delay(attempt)
				if d < ceiling/2 || d > ceiling {
					t.Fatalf("attempt %d: delay %s outside [%s, %s]", attempt, d, ceiling/2, ceiling)
				}
			}
		}
	})

	t.Run("capped at Max even for huge attempts", func(t *testing.T) {
		t.Parallel()
		for _, attempt := range []int{7, 8, 64, 1 << 30} {
			if d := p.Delay(attempt); d > time.Minute || d < 30*time.Second {
				t.Fatalf("attempt %d: delay %s, want within [30s, 1m]", attempt, d)
			}
		}
	})

	t.Run("jitter spreads delays", func(t *testing.T) {
		t.Parallel()
		seen := map[time.Duration]bool{}
		for range 50 {
			seen[p.Delay(4)] = true
		}
		if len(seen) < 10 {
			t.Fatalf("only %d distinct delays in 50 draws: no jitter", len(seen))
		}
	})

	t.Run("attempt below one behaves as first attempt", func(t *testing.T) {
		t.Parallel()
		if d := p.Delay(0); d > time.Second {
			t.Fatalf("delay %s > Min", d)
		}
	})
}
