package nats

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// DefaultDuplicateWindow is StreamConfig.DuplicateWindow's default. It is
// longer than the server's 2 minutes so that a relay's retry after a publish
// timeout, or a takeover after a crashed relay's lease expired, still lands
// inside the window.
const DefaultDuplicateWindow = 10 * time.Minute

// StreamConfig describes the JetStream stream EnsureStream creates or
// updates.
type StreamConfig struct {
	// Name is the stream name. Required; no '.', '*', '>', '/', '\' or
	// whitespace.
	Name string

	// Subjects the stream stores (wildcards allowed, e.g. "orders.>").
	// Zero means the single subject Name.
	Subjects []string

	// DuplicateWindow is how long the stream remembers Nats-Msg-Id values to
	// drop duplicates. Zero means DefaultDuplicateWindow.
	DuplicateWindow time.Duration

	// MemoryStorage keeps the stream in memory instead of on disk. Zero
	// (false) means file storage, which survives a server restart.
	MemoryStorage bool

	// Replicas is the stream's replica count in a cluster. Zero means 1.
	Replicas int

	// MaxAge drops messages older than this. Zero means keep forever.
	MaxAge time.Duration
}

func (s StreamConfig) withDefaults() StreamConfig {
	if len(s.Subjects) == 0 {
		s.Subjects = []string{s.Name}
	}
	s.DuplicateWindow = cmp.Or(s.DuplicateWindow, DefaultDuplicateWindow)
	s.Replicas = cmp.Or(s.Replicas, 1)
	return s
}

func (s StreamConfig) validate() error {
	switch {
	case s.Name == "" || strings.ContainsAny(s.Name, ".*>/\\ \t\r\n"):
		return fmt.Errorf("nats: invalid config: StreamConfig.Name %q must be non-empty with no '.', '*', '>', '/', '\\' or whitespace", s.Name)
	case s.DuplicateWindow < 0:
		return fmt.Errorf("nats: invalid config: StreamConfig.DuplicateWindow %s must not be negative", s.DuplicateWindow)
	case s.Replicas < 0 || s.Replicas > 5:
		return fmt.Errorf("nats: invalid config: StreamConfig.Replicas %d out of range 1..5", s.Replicas)
	case s.MaxAge < 0:
		return fmt.Errorf("nats: invalid config: StreamConfig.MaxAge %s must not be negative", s.MaxAge)
	}
	for _, subj := range s.Subjects {
		if subj == "" || strings.ContainsAny(subj, " \t\r\n") {
			return fmt.Errorf("nats: invalid config: StreamConfig.Subjects has invalid subject %q", subj)
		}
	}
	return nil
}

// EnsureStream creates the stream, or updates an existing one so that it
// also stores s.Subjects and uses s.DuplicateWindow. Call it once at start
// (deploy or service boot), not per publish.
func EnsureStream(ctx context.Context, cfg Config, s StreamConfig) error {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	nc, err := cfg.connect("outboxkit-admin")
	if err != nil {
		return err
	}
	defer nc.Close()
	return ensureStream(ctx, nc, s)
}

func ensureStream(ctx context.Context, nc *nats.Conn, s StreamConfig) error {
	if err := s.validate(); err != nil {
		return err
	}
	s = s.withDefaults()
	js, err := nc.JetStream()
	if err != nil {
		return fmt.Errorf("nats: jetstream: %w", err)
	}
	storage := nats.FileStorage
	if s.MemoryStorage {
		storage = nats.MemoryStorage
	}
	info, err := js.StreamInfo(s.Name, nats.Context(ctx))
	switch {
	case errors.Is(err, nats.ErrStreamNotFound):
		_, err = js.AddStream(&nats.StreamConfig{
			Name:       s.Name,
			Subjects:   s.Subjects,
			Storage:    storage,
			Replicas:   s.Replicas,
			Duplicates: s.DuplicateWindow,
			MaxAge:     s.MaxAge,
			Retention:  nats.LimitsPolicy,
			Discard:    nats.DiscardOld,
		}, nats.Context(ctx))
		if err != nil {
			return fmt.Errorf("nats: create stream %q: %w", s.Name, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("nats: stream %q info: %w", s.Name, err)
	}
	sc := info.Config
	changed := false
	for _, subj := range s.Subjects {
		if !slices.Contains(sc.Subjects, subj) {
			sc.Subjects = append(sc.Subjects, subj)
			changed = true
		}
	}
	if sc.Duplicates != s.DuplicateWindow {
		sc.Duplicates = s.DuplicateWindow
		changed = true
	}
	if !changed {
		return nil
	}
	if _, err := js.UpdateStream(&sc, nats.Context(ctx)); err != nil {
		return fmt.Errorf("nats: update stream %q: %w", s.Name, err)
	}
	return nil
}
