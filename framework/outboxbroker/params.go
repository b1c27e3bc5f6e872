package outboxbroker

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ParamError reports an invalid or unknown broker URL parameter.
type ParamError struct {
	// Param is the URL parameter's name.
	Param string
	// Reason says what is wrong with it.
	Reason string
}

// Error implements error; it names the parameter but never echoes values of
// secret-looking parameters.
func (e *ParamError) Error() string {
	return fmt.Sprintf("invalid broker URL parameter %q: %s", e.Param, e.Reason)
}

// Params reads typed URL query parameters for an Opener and records the
// first problem. Every parameter an Opener does not read is reported as
// unknown by Err, so a misspelled setting fails instead of being ignored.
type Params struct {
	q    url.Values
	used map[string]bool
	err  error
}

// NewParams returns a Params over u's query.
func NewParams(u *url.URL) *Params {
	return &Params{q: u.Query(), used: map[string]bool{}}
}

func (p *Params) raw(name string) (string, bool) {
	p.used[name] = true
	vs, ok := p.q[name]
	if !ok {
		return "", false
	}
	if len(vs) != 1 && p.err == nil {
		p.err = &ParamError{Param: name, Reason: "given more than once"}
	}
	return vs[len(vs)-1], true
}

func (p *Params) fail(name, reason string) {
	if p.err == nil {
		p.err = &ParamError{Param: name, Reason: reason}
	}
}

// String returns the parameter's value, or def when absent.
func (p *Params) String(name, def string) string {
	v, ok := p.raw(name)
	if !ok {
		return def
	}
	return v
}

// Bool returns the parameter as a bool (strconv.ParseBool), or def when absent.
func (p *Params) Bool(name string, def bool) bool {
	v, ok := p.raw(name)
	if !ok {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		p.fail(name, "want true or false")
		return def
	}
	return b
}

// Int returns the parameter as an int within [lo, hi], or def when absent.
func (p *Params) Int(name string, def, lo, hi int) int {
	v, ok := p.raw(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		p.fail(name, fmt.Sprintf("want an integer in %d..%d", lo, hi))
		return def
	}
	return n
}

// Duration returns the parameter as a time.Duration ("500ms", "2m") of at
// least lo, or def when absent.
func (p *Params) Duration(name string, def, lo time.Duration) time.Duration {
	v, ok := p.raw(name)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < lo {
		p.fail(name, fmt.Sprintf("want a duration of at least %s, like 30s", lo))
		return def
	}
	return d
}

// Enum returns the parameter's value, which must be one of allowed, or def
// when absent.
func (p *Params) Enum(name, def string, allowed ...string) string {
	v, ok := p.raw(name)
	if !ok {
		return def
	}
	if !slices.Contains(allowed, v) {
		p.fail(name, "want one of "+strings.Join(allowed, ", "))
		return def
	}
	return v
}

// Err returns the first invalid parameter, or the first (alphabetically)
// parameter that no accessor read, or nil.
func (p *Params) Err() error {
	if p.err != nil {
		return p.err
	}
	var unknown []string
	for k := range p.q {
		if !p.used[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		known := make([]string, 0, len(p.used))
		for k := range p.used {
			known = append(known, k)
		}
		slices.Sort(known)
		return &ParamError{Param: unknown[0], Reason: "unknown parameter (known: " + strings.Join(known, ", ") + ")"}
	}
	return nil
}
