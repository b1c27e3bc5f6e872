// Package backoff computes capped exponential delays with jitter.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Policy is a capped exponential backoff with "equal jitter": the delay for
// attempt n (1-based) is d/2 + rand[0, d/2] with d = min(Max, Min*2^(n-1)),
// so retries never synchronize across events or relays and never exceed Max.
type Policy struct {
	Min time.Duration
	Max time.Duration
}

// Delay returns the wait after the given failed attempt (1 = first failure).
func (p Policy) Delay(attempt int) time.Duration {
	d := p.ceiling(attempt)
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + rand.N(half+1)
}

// ceiling is the un-jittered delay for attempt, capped at Max.
func (p Policy) ceiling(attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	d := p.Min
	for i := 1; i < attempt; i++ {
		if d >= p.Max/2 {
			return p.Max
		}
		d *= 2
	}
	return min(d, p.Max)
}
