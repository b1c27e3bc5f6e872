package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/outboxkit/outboxkit/drivers/postgres"
	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// cdcCommand is `outbox cdc status|create|drop`: the replication slot of a
// CDC relay (relay --mode cdc).
func (a *app) cdcCommand() *cobra.Command {
	var slot string
	cmd := &cobra.Command{
		Use:   "cdc",
		Short: "Inspect, create or drop the replication slot of a CDC relay (relay --mode cdc, PostgreSQL)",
		Long: `cdc manages the logical replication slot a CDC relay streams from (docs/cdc.md).
The publication it reads is created by "outbox migrate up"; the relay creates
its slot itself when it starts. A slot retains WAL until the relay confirms it:
drop the slot of a relay you retire, or the server's disk fills.`,
	}
	cmd.PersistentFlags().StringVar(&slot, "slot", "", "replication slot name (default <table>_slot)")
	with := func(cmd *cobra.Command, fn func(ctx context.Context, c *postgres.CDC) error) error {
		a.cdc, a.cdcSlot = true, slot
		return a.withOutbox(cmd, func(ctx context.Context, drv outboxdriver.Driver, _ *outbox.Outbox) error {
			c, ok := drv.(*postgres.CDC)
			if !ok {
				return usageError("cdc: PostgreSQL only")
			}
			return fn(ctx, c)
		})
	}
	var out outputFlag
	status := &cobra.Command{
		Use:     "status",
		Short:   "Show the slot: active or not, confirmed LSN, lag and retained WAL",
		Example: "  outbox cdc status --db-url postgres://app@db/app\n  outbox cdc status -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.check(); err != nil {
				return err
			}
			return with(cmd, func(ctx context.Context, c *postgres.CDC) error {
				s, err := c.SlotStatus(ctx)
				if errors.Is(err, postgres.ErrSlotNotFound) {
					return &codedError{exitNotFound, err}
				}
				if err != nil {
					return err
				}
				if out.format == "json" {
					return a.writeJSON(map[string]any{
						"slot": s.Slot, "publication": c.Publication(), "active": s.Active, "active_pid": s.ActivePID,
						"confirmed_lsn": s.ConfirmedLSN, "restart_lsn": s.RestartLSN, "current_lsn": s.CurrentLSN,
						"lag_bytes": s.LagBytes, "lag_seconds": s.LagSeconds, "retained_wal_bytes": s.RetainedBytes,
						"wal_status": s.WALStatus, "safe_wal_bytes": s.SafeBytes,
					})
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintf(tw, "slot\t%s\n", s.Slot)
				fmt.Fprintf(tw, "publication\t%s\n", c.Publication())
				fmt.Fprintf(tw, "active\t%v (pid %d)\n", s.Active, s.ActivePID)
				fmt.Fprintf(tw, "confirmed LSN\t%s\n", s.ConfirmedLSN)
				fmt.Fprintf(tw, "current LSN\t%s\n", s.CurrentLSN)
				fmt.Fprintf(tw, "lag\t%d bytes, %.3fs\n", s.LagBytes, s.LagSeconds)
				fmt.Fprintf(tw, "retained WAL\t%d bytes (restart LSN %s)\n", s.RetainedBytes, s.RestartLSN)
				safe := "unlimited (max_slot_wal_keep_size = -1)"
				if s.SafeBytes >= 0 {
					safe = fmt.Sprintf("%d bytes before max_slot_wal_keep_size", s.SafeBytes)
				}
				fmt.Fprintf(tw, "WAL status\t%s, %s\n", s.WALStatus, safe)
				return tw.Flush()
			})
		},
	}
	out.register(status)
	create := &cobra.Command{
		Use:   "create",
		Short: "Create the slot (the relay creates it when it starts; creating it first starts the stream here)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return with(cmd, func(ctx context.Context, c *postgres.CDC) error {
				created, err := c.SlotCreate(ctx)
				if err != nil {
					return err
				}
				if created {
					fmt.Fprintf(a.stdout, "created replication slot %s\n", c.Slot())
				} else {
					fmt.Fprintf(a.stdout, "replication slot %s already exists\n", c.Slot())
				}
				return nil
			})
		},
	}
	drop := &cobra.Command{
		Use:   "drop",
		Short: "Drop the slot (the server then frees its WAL; a relay started later reads pending events from the table)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return with(cmd, func(ctx context.Context, c *postgres.CDC) error {
				err := c.SlotDrop(ctx)
				if errors.Is(err, postgres.ErrSlotNotFound) {
					return &codedError{exitNotFound, err}
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "dropped replication slot %s\n", c.Slot())
				return nil
			})
		},
	}
	cmd.AddCommand(status, create, drop)
	return cmd
}
