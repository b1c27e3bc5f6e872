package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// withOutbox runs fn with an opened outbox and a command timeout.
func (a *app) withOutbox(cmd *cobra.Command, fn func(ctx context.Context, drv outboxdriver.Driver, ob *outbox.Outbox) error) error {
	drv, ob, closeDB, err := a.openOutbox(cmd.Context())
	if err != nil {
		return err
	}
	defer closeDB()
	ctx, cancel := context.WithTimeout(cmd.Context(), a.flags.timeout)
	defer cancel()
	return fn(ctx, drv, ob)
}

func (a *app) migrateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Create or upgrade the outbox table",
	}
	up := &cobra.Command{
		Use:     "up",
		Short:   "Apply every pending migration (idempotent, safe to run concurrently)",
		Example: "  outbox migrate up --db-url postgres://app@db:5432/app --table outbox",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withOutbox(cmd, func(ctx context.Context, drv outboxdriver.Driver, ob *outbox.Outbox) error {
				if err := ob.Migrate(ctx); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "migrated %s\n", tableName(drv))
				return nil
			})
		},
	}
	status := &cobra.Command{
		Use:     "status",
		Short:   "List applied and pending migrations",
		Example: "  outbox migrate status",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withOutbox(cmd, func(ctx context.Context, drv outboxdriver.Driver, _ *outbox.Outbox) error {
				st, err := drv.MigrateStatus(ctx, &outboxdriver.MigrateStatusParams{})
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "table:   %s\napplied: %v\npending: %v\n", tableName(drv), st.Applied, st.Pending)
				return nil
			})
		},
	}
	cmd.AddCommand(up, status)
	return cmd
}

type outputFlag struct{ format string }

func (o *outputFlag) register(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&o.format, "output", "o", "table", "output format: table or json")
}

func (o *outputFlag) check() error {
	if o.format != "table" && o.format != "json" {
		return usageError("--output %q: want table or json", o.format)
	}
	return nil
}

func (a *app) writeJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (a *app) statusCommand() *cobra.Command {
	var out outputFlag
	cmd := &cobra.Command{
		Use:     "status",
		Short:   "Show pending and dead counts, the oldest pending age, last minute's throughput and the acknowledgment counts",
		Example: "  outbox status\n  outbox status -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.check(); err != nil {
				return err
			}
			return a.withOutbox(cmd, func(ctx context.Context, drv outboxdriver.Driver, ob *outbox.Outbox) error {
				s, err := ob.Stats(ctx)
				if err != nil {
					return err
				}
				if out.format == "json" {
					j := map[string]any{
						"table": tableName(drv), "pending": s.Pending, "dead": s.Dead,
						"oldest_pending_age_seconds": s.OldestPendingAge.Seconds(),
						"delivered_last_minute":      s.DeliveredLastMinute,
					}
					if s.Ack != nil {
						j["ack"] = map[string]any{"awaiting": s.Ack.Awaiting, "rejected": s.Ack.Rejected,
							"unacknowledged":              s.Ack.Unacknowledged,
							"oldest_awaiting_age_seconds": s.Ack.OldestAwaitingAge.Seconds()}
					}
					return a.writeJSON(j)
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintf(tw, "table\t%s\n", tableName(drv))
				fmt.Fprintf(tw, "pending\t%d\n", s.Pending)
				fmt.Fprintf(tw, "dead\t%d\n", s.Dead)
				fmt.Fprintf(tw, "oldest pending\t%s\n", s.OldestPendingAge.Round(time.Millisecond))
				fmt.Fprintf(tw, "delivered last minute\t%d (%.1f/s)\n", s.DeliveredLastMinute, float64(s.DeliveredLastMinute)/60)
				if s.Ack != nil {
					fmt.Fprintf(tw, "ack awaiting\t%d\n", s.Ack.Awaiting)
					fmt.Fprintf(tw, "ack oldest awaiting\t%s\n", s.Ack.OldestAwaitingAge.Round(time.Millisecond))
					fmt.Fprintf(tw, "ack rejected\t%d\n", s.Ack.Rejected)
					fmt.Fprintf(tw, "ack unacknowledged\t%d\n", s.Ack.Unacknowledged)
				}
				return tw.Flush()
			})
		},
	}
	out.register(cmd)
	return cmd
}

// eventJSON is the JSON form of an event in list and show.
type eventJSON struct {
	ID            string            `json:"id"`
	Seq           int64             `json:"seq"`
	Type          string            `json:"type"`
	Topic         string            `json:"topic"`
	Key           string            `json:"key"`
	Status        string            `json:"status"`
	Attempts      int               `json:"attempts"`
	LastError     string            `json:"last_error,omitempty"`
	CreatedAt     time.Time         `json:"created_at"`
	NextAttemptAt time.Time         `json:"next_attempt_at"`
	DeliveredAt   *time.Time        `json:"delivered_at,omitempty"`
	LockedBy      string            `json:"locked_by,omitempty"`
	Headers       map[string]string `json:"headers,omitempty"`
	Payload       json.RawMessage   `json:"payload,omitempty"`
	PayloadBase64 []byte            `json:"payload_base64,omitempty"`
	Ack           *ackJSON          `json:"ack,omitempty"`
}

// ackJSON is the JSON form of an event's acknowledgment state.
type ackJSON struct {
	Status               string     `json:"status"`
	Reason               string     `json:"reason,omitempty"`
	Resends              int        `json:"resends"`
	MaxResends           int        `json:"max_resends"`
	DeadlineSeconds      float64    `json:"deadline_seconds"`
	ResendBackoffSeconds float64    `json:"resend_backoff_seconds"`
	AnsweredAt           *time.Time `json:"answered_at,omitempty"`
	ResentAt             *time.Time `json:"resent_at,omitempty"`
}

func toJSON(e *outbox.StoredEvent, withBody bool) eventJSON {
	j := eventJSON{ID: e.ID, Seq: e.Seq, Type: e.Type, Topic: e.Topic, Key: e.Key, Status: string(e.Status),
		Attempts: e.Attempts, LastError: e.LastError, CreatedAt: e.CreatedAt, NextAttemptAt: e.NextAttemptAt,
		DeliveredAt: e.DeliveredAt, LockedBy: e.LockedBy}
	if a := e.Ack; a != nil {
		j.Ack = &ackJSON{Status: string(a.Status), Reason: a.Reason, Resends: a.Resends, MaxResends: a.Policy.MaxResends,
			DeadlineSeconds: a.Policy.Deadline.Seconds(), ResendBackoffSeconds: a.Policy.ResendBackoff.Seconds(),
			AnsweredAt: a.AnsweredAt, ResentAt: a.ResentAt}
	}
	if withBody {
		j.Headers = e.Headers
		if json.Valid(e.Payload) {
			j.Payload = e.Payload
		} else {
			j.PayloadBase64 = e.Payload
		}
	}
	return j
}

func (a *app) listCommand() *cobra.Command {
	var (
		out                   outputFlag
		status, typ, key, ack string
		since, until          string
		limit                 int
		after                 int64
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List events, oldest first, with filters",
		Example: `  outbox list --status dead
  outbox list --type care.invoice.issued --since 2h -o json
  outbox list --key INV-001 --since 2026-11-01T00:00:00Z --until 7d
  outbox list --after 1200 --limit 50      # next page (the cursor is printed after each page)
  outbox list --ack unacknowledged         # events whose receiver never answered`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.check(); err != nil {
				return err
			}
			f := outbox.ListFilter{Status: outbox.Status(status), Type: typ, Key: key, After: after, Limit: limit,
				Ack: outbox.AckStatus(ack)}
			if status != "" && !f.Status.Valid() {
				return usageError("--status %q: want pending, delivered or dead", status)
			}
			if ack != "" && !f.Ack.Valid() {
				return usageError("--ack %q: want awaiting, acknowledged, rejected or unacknowledged", ack)
			}
			var err error
			if f.Since, err = parseTime(since); err != nil {
				return usageError("--since: %v", err)
			}
			if f.Until, err = parseTime(until); err != nil {
				return usageError("--until: %v", err)
			}
			if limit < 1 || limit > 10000 {
				return usageError("--limit %d: want 1..10000", limit)
			}
			return a.withOutbox(cmd, func(ctx context.Context, _ outboxdriver.Driver, ob *outbox.Outbox) error {
				page, err := ob.List(ctx, f)
				if err != nil {
					return err
				}
				if out.format == "json" {
					events := make([]eventJSON, 0, len(page.Events))
					for _, e := range page.Events {
						events = append(events, toJSON(e, false))
					}
					return a.writeJSON(map[string]any{"events": events, "next": page.Next})
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "SEQ\tID\tTYPE\tTOPIC\tKEY\tSTATUS\tACK\tATTEMPTS\tCREATED\tLAST ERROR")
				for _, e := range page.Events {
					ackState := "-"
					if e.Ack != nil {
						ackState = string(e.Ack.Status)
					}
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", e.Seq, e.ID, printable(e.Type), printable(e.Topic),
						printable(e.Key), e.Status, ackState, e.Attempts, e.CreatedAt.UTC().Format(time.RFC3339),
						printable(truncate(oneLine(e.LastError), 60)))
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				if page.Next != 0 {
					fmt.Fprintf(a.stderr, "more: --after %d\n", page.Next)
				}
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&status, "status", "", "pending, delivered or dead")
	f.StringVar(&typ, "type", "", "event type")
	f.StringVar(&key, "key", "", "event key")
	f.StringVar(&ack, "ack", "", "acknowledgment state: awaiting, acknowledged, rejected or unacknowledged")
	f.StringVar(&since, "since", "", "created at or after: RFC 3339 time or age (2h, 7d)")
	f.StringVar(&until, "until", "", "created before: RFC 3339 time or age")
	f.IntVar(&limit, "limit", 100, "page size (1..10000)")
	f.Int64Var(&after, "after", 0, "cursor: list events after this seq")
	out.register(cmd)
	return cmd
}

// truncate cuts s to at most n bytes, on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - 1
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// printable returns s as is when it is valid UTF-8 of printable characters
// (tabs and newlines excluded, they break the table), and otherwise Go-quoted:
// a stored key or error holding terminal escape sequences, control
// characters or invalid UTF-8 is shown escaped, never interpreted by the
// operator's terminal.
func printable(s string) string {
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

func (a *app) showCommand() *cobra.Command {
	var (
		out        outputFlag
		maxPayload int
	)
	cmd := &cobra.Command{
		Use:     "show ID",
		Short:   "Show one event: payload, headers, attempts, last error",
		Example: "  outbox show 01933b7e-8a4c-7d2e-9a51-5f0c3b1e2d4f",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.check(); err != nil {
				return err
			}
			if maxPayload < 0 {
				return usageError("--max-payload %d must not be negative", maxPayload)
			}
			return a.withOutbox(cmd, func(ctx context.Context, _ outboxdriver.Driver, ob *outbox.Outbox) error {
				e, err := ob.Get(ctx, args[0])
				if errors.Is(err, outbox.ErrNotFound) {
					return &codedError{exitNotFound, fmt.Errorf("no event %s", args[0])}
				}
				if err != nil {
					return err
				}
				if out.format == "json" {
					return a.writeJSON(toJSON(e, true))
				}
				j := toJSON(e, true)
				tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintf(tw, "id\t%s\nseq\t%d\ntype\t%s\ntopic\t%s\nkey\t%s\nstatus\t%s\nattempts\t%d\n",
					e.ID, e.Seq, printable(e.Type), printable(e.Topic), printable(e.Key), e.Status, e.Attempts)
				fmt.Fprintf(tw, "created\t%s\n", e.CreatedAt.UTC().Format(time.RFC3339Nano))
				if e.DeliveredAt != nil {
					fmt.Fprintf(tw, "delivered\t%s\n", e.DeliveredAt.UTC().Format(time.RFC3339Nano))
				} else if e.Status == outbox.StatusPending {
					fmt.Fprintf(tw, "next attempt\t%s\n", e.NextAttemptAt.UTC().Format(time.RFC3339Nano))
				}
				if e.LockedBy != "" {
					fmt.Fprintf(tw, "leased by\t%s\n", printable(e.LockedBy))
				}
				if e.LastError != "" {
					fmt.Fprintf(tw, "last error\t%s\n", printable(e.LastError))
				}
				if ack := e.Ack; ack != nil {
					fmt.Fprintf(tw, "ack\t%s (resends %d of %d, deadline %s, resend backoff %s)\n", ack.Status, ack.Resends,
						ack.Policy.MaxResends, ack.Policy.Deadline, ack.Policy.ResendBackoff)
					if ack.Reason != "" {
						fmt.Fprintf(tw, "ack reason\t%s\n", printable(ack.Reason))
					}
					if ack.AnsweredAt != nil {
						fmt.Fprintf(tw, "ack answered\t%s\n", ack.AnsweredAt.UTC().Format(time.RFC3339Nano))
					}
					if ack.ResentAt != nil {
						fmt.Fprintf(tw, "ack last resend\t%s\n", ack.ResentAt.UTC().Format(time.RFC3339Nano))
					}
				}
				for k, v := range e.Headers {
					fmt.Fprintf(tw, "header %s\t%s\n", printable(k), printable(v))
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				body, more := e.Payload, 0
				if maxPayload > 0 && len(body) > maxPayload {
					body, more = body[:maxPayload], len(body)-maxPayload
				}
				if j.Payload != nil {
					// Valid JSON holds no raw control characters; a cut may
					// split a rune, which printable would quote whole.
					fmt.Fprintf(a.stdout, "payload (%d bytes, JSON):\n%s\n", len(e.Payload), strings.ToValidUTF8(string(body), "\uFFFD"))
				} else {
					fmt.Fprintf(a.stdout, "payload (%d bytes, not JSON, hex):\n%x\n", len(e.Payload), body)
				}
				if more > 0 {
					fmt.Fprintf(a.stdout, "... %d more byte(s) not shown (--max-payload %d; 0 shows all, -o json prints the whole event)\n", more, maxPayload)
				}
				return nil
			})
		},
	}
	cmd.Flags().IntVar(&maxPayload, "max-payload", 64<<10, "bytes of the payload shown in table output; 0 shows all")
	out.register(cmd)
	return cmd
}

// confirm asks "prompt [y/N]" when stdin is a terminal; otherwise it requires
// --yes.
func (a *app) confirm(prompt string, yes bool) error {
	if yes {
		return nil
	}
	f, ok := a.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return &codedError{exitAborted, fmt.Errorf("%s: not confirmed (stdin is not a terminal): pass --yes", prompt)}
	}
	fmt.Fprintf(a.stderr, "%s [y/N] ", prompt)
	line, _ := bufio.NewReader(a.stdin).ReadString('\n')
	if strings.ToLower(strings.TrimSpace(line)) != "y" {
		return &codedError{exitAborted, errors.New("aborted")}
	}
	return nil
}

func (a *app) retryCommand() *cobra.Command {
	var (
		allDead, allUnacked, dryRun, yes bool
		typ                              string
	)
	cmd := &cobra.Command{
		Use:   "retry [ID...]",
		Short: "Make events pending again so the relay (re)publishes them",
		Long: `retry makes the given events pending again with a fresh attempt budget:
dead events are retried, delivered events are resent, pending events in
backoff are scheduled now. --all-dead retries every dead event (of --type).
--all-unacknowledged resends every event whose receiver never answered
(acknowledgment unacknowledged) and awaits its answer again.
It prints how many events it will change and asks for confirmation (or --yes).`,
		Example: `  outbox retry 01933b7e-8a4c-7d2e-9a51-5f0c3b1e2d4f
  outbox retry --all-dead --dry-run
  outbox retry --all-dead --type care.invoice.issued --yes
  outbox retry --all-unacknowledged --yes`,
		RunE: func(cmd *cobra.Command, ids []string) error {
			modes := 0
			for _, on := range []bool{allDead, allUnacked, len(ids) > 0} {
				if on {
					modes++
				}
			}
			if modes != 1 {
				return usageError("give event ids, --all-dead or --all-unacknowledged (exactly one)")
			}
			if typ != "" && !allDead {
				return usageError("--type only narrows --all-dead")
			}
			return a.withOutbox(cmd, func(ctx context.Context, _ outboxdriver.Driver, ob *outbox.Outbox) error {
				n, err := a.countRetry(ctx, ob, ids, typ, allUnacked)
				if err != nil {
					return err
				}
				if dryRun {
					fmt.Fprintf(a.stdout, "would retry %d event(s)\n", n)
					return nil
				}
				if n == 0 {
					fmt.Fprintln(a.stdout, "nothing to retry")
					return nil
				}
				if err := a.confirm(fmt.Sprintf("retry %d event(s)?", n), yes); err != nil {
					return err
				}
				var done int64
				switch {
				case allDead:
					done, err = ob.RetryDead(ctx, typ)
				case allUnacked:
					done, err = ob.RetryUnacknowledged(ctx)
				default:
					done, err = ob.Retry(ctx, ids...)
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "retried %d event(s)\n", done)
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.BoolVar(&allDead, "all-dead", false, "retry every dead event")
	f.BoolVar(&allUnacked, "all-unacknowledged", false, "resend every event whose acknowledgment is unacknowledged")
	f.StringVar(&typ, "type", "", "with --all-dead: only events of this type")
	f.BoolVar(&dryRun, "dry-run", false, "print how many events would change, change nothing")
	f.BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

// countRetry counts the events a retry would change.
func (a *app) countRetry(ctx context.Context, ob *outbox.Outbox, ids []string, typ string, unacked bool) (int, error) {
	if len(ids) > 0 {
		n := 0
		for _, id := range ids {
			e, err := ob.Get(ctx, id)
			if errors.Is(err, outbox.ErrNotFound) {
				return 0, &codedError{exitNotFound, fmt.Errorf("no event %s", id)}
			}
			if err != nil {
				return 0, err
			}
			if e.Status != outbox.StatusPending || e.LockedBy == "" {
				n++
			}
		}
		return n, nil
	}
	n := 0
	f := outbox.ListFilter{Status: outbox.StatusDead, Type: typ, Limit: 10000}
	if unacked {
		f = outbox.ListFilter{Ack: outbox.AckUnacknowledged, Limit: 10000}
	}
	for {
		page, err := ob.List(ctx, f)
		if err != nil {
			return 0, err
		}
		n += len(page.Events)
		if page.Next == 0 {
			return n, nil
		}
		f.After = page.Next
	}
}

func (a *app) purgeCommand() *cobra.Command {
	var (
		olderThan string
		batch     int
	)
	cmd := &cobra.Command{
		Use:   "purge",
		Short: "Delete delivered events older than a duration, in bounded batches",
		Long: `purge deletes delivered events older than --delivered-older-than in batches of
--batch-size, so it never holds long locks. Pending and dead events are never
purged. On a terminal it shows progress.`,
		Example: "  outbox purge --delivered-older-than 7d\n  outbox purge --delivered-older-than 36h --batch-size 5000",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if olderThan == "" {
				return usageError("--delivered-older-than is required (e.g. 7d)")
			}
			age, err := parseAge(olderThan)
			if err != nil {
				return usageError("--delivered-older-than: %v", err)
			}
			if age < 0 {
				return usageError("--delivered-older-than %s must not be negative", olderThan)
			}
			if batch < 1 {
				return usageError("--batch-size %d must be positive", batch)
			}
			_, ob, closeDB, err := a.openOutbox(cmd.Context())
			if err != nil {
				return err
			}
			defer closeDB()
			progress := func(int64) {}
			shown := false
			if f, ok := a.stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				progress = func(n int64) { fmt.Fprintf(a.stderr, "\rpurged %d", n); shown = true }
			}
			// No overall timeout: purging a large history may take long; each
			// batch is bounded and Ctrl-C stops between batches.
			n, err := ob.Purge(cmd.Context(), age, outbox.PurgeOptions{BatchSize: batch, Progress: progress})
			if shown { // end the progress line before the summary
				fmt.Fprintln(a.stderr)
			}
			fmt.Fprintf(a.stdout, "purged %d delivered event(s) older than %s\n", n, olderThan)
			return err
		},
	}
	cmd.Flags().StringVar(&olderThan, "delivered-older-than", "", "age of delivered events to delete (7d, 36h)")
	cmd.Flags().IntVar(&batch, "batch-size", 1000, "rows per DELETE")
	return cmd
}
