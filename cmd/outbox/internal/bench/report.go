package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Report is the result of Run, printed as tables or as JSON (--json).
type Report struct {
	// Machine describes where the bench ran.
	Machine Machine `json:"machine"`
	// Settings are the bench parameters every cell used.
	Settings Settings `json:"settings"`
	// Cells holds one result per database × broker cell, in run order.
	Cells []CellReport `json:"cells"`
}

// Machine describes the machine and toolchain of the run.
type Machine struct {
	// CPUs is the number of logical CPUs Go sees.
	CPUs int `json:"cpus"`
	// OS and Arch are runtime.GOOS and runtime.GOARCH.
	OS   string `json:"os"`
	Arch string `json:"arch"`
	// Go is the toolchain version the bench was built with.
	Go string `json:"go"`
}

// Settings are the bench parameters.
type Settings struct {
	// Events is the backlog size of every drain and baseline.
	Events int `json:"events"`
	// BatchSize is the relay's batch size.
	BatchSize int `json:"batch_size"`
	// Keys is the number of distinct event keys.
	Keys int `json:"keys"`
	// PayloadBytes is each event's payload size.
	PayloadBytes int `json:"payload_bytes"`
	// Rate is the trickle's target events per second.
	Rate int `json:"rate"`
	// TrickleSeconds is the trickle's length.
	TrickleSeconds float64 `json:"trickle_seconds"`
	// Relays is the relay count of the extra drain (1: none).
	Relays int `json:"relays"`
	// NoBaselines is true when the baselines were skipped (their figures
	// and the ratios are then zero).
	NoBaselines bool `json:"no_baselines,omitempty"`
	// RelayFlags are the extra flags every relay process ran with.
	RelayFlags []string `json:"relay_flags,omitempty"`
}

// CellReport is the result of one database × broker cell.
type CellReport struct {
	// ID names this cell's tables (outboxbench_<ID>...) and, on NATS, its
	// stream (OUTBOXBENCH_<ID>), all removed when the cell ends.
	ID string `json:"id"`
	// Database is the dialect (postgres, mysql).
	Database string `json:"database"`
	// Broker is the broker URL's scheme (nats, kafka, ...).
	Broker string `json:"broker"`
	// DBURL and BrokerURL are the cell's URLs, passwords redacted.
	DBURL     string `json:"db_url"`
	BrokerURL string `json:"broker_url"`
	// Drain is the backlog drain by one relay process.
	Drain Drain `json:"drain"`
	// DrainMulti is the drain by Settings.Relays relay processes, when
	// asked for.
	DrainMulti *Drain `json:"drain_multi,omitempty"`
	// IdleRelayCPUPercent is the relay's CPU, in percent of one core,
	// while no event is pending; nil when not measured.
	IdleRelayCPUPercent *float64 `json:"idle_relay_cpu_percent,omitempty"`
	// Latency is the trickle's commit → broker latency.
	Latency Latency `json:"latency"`
	// Baselines are measured in the same run on the same services.
	Baselines Baselines `json:"baselines"`
	// Ratios compare Drain with the baselines.
	Ratios Ratios `json:"ratios"`
}

// Drain is one timed drain of a backlog by relay processes.
type Drain struct {
	// Relays is how many relay processes drained the backlog together.
	Relays int `json:"relays"`
	// Events is the backlog size.
	Events int `json:"events"`
	// Seconds is from the first relay's start to the moment no event was
	// pending any more (delivered and marked).
	Seconds float64 `json:"seconds"`
	// EventsPerSec is Events / Seconds.
	EventsPerSec float64 `json:"events_per_sec"`
	// RelayCPUPercent is the relay processes' CPU during the drain, in
	// percent of one core (summed over relays).
	RelayCPUPercent float64 `json:"relay_cpu_percent"`
	// RelayPeakRSSMB is the relay processes' peak resident memory (VmHWM,
	// summed over relays), in MiB.
	RelayPeakRSSMB float64 `json:"relay_peak_rss_mb"`
	// DBCPUPercent is the database's CPU during the drain, in percent of
	// one core; nil when not readable. DBCPUScope says what it covers.
	DBCPUPercent *float64 `json:"db_cpu_percent,omitempty"`
	DBCPUScope   string   `json:"db_cpu_scope,omitempty"`
}

// Latency is the result of the trickle.
type Latency struct {
	// TargetRate is the trickle's target events per second.
	TargetRate int `json:"target_rate"`
	// AchievedRate is the committed events per second the writer managed.
	AchievedRate float64 `json:"achieved_rate"`
	// Committed counts events committed; Received those the consumer got.
	Committed int `json:"committed"`
	Received  int `json:"received"`
	// P50Ms, P90Ms, P99Ms and MaxMs are latency percentiles in ms of the
	// events committed once the first one had arrived (events flowing).
	P50Ms float64 `json:"p50_ms"`
	P90Ms float64 `json:"p90_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
	// WakeMs is the first event's latency: the relay was idle, polling at
	// its slowest (or waiting for a notification). WakeEvents counts the
	// events committed before the first one arrived, which the percentiles
	// leave out.
	WakeMs     float64 `json:"wake_ms"`
	WakeEvents int     `json:"wake_events"`
	// RelayCPUPercent is the relay's CPU during the trickle, in percent of
	// one core.
	RelayCPUPercent float64 `json:"relay_cpu_percent"`
	// RelayPeakRSSMB is the relay's peak resident memory over its whole
	// life (drain, idle and trickle), in MiB.
	RelayPeakRSSMB float64 `json:"relay_peak_rss_mb"`
	// DBCPUPercent is the database's CPU during the trickle (writer and
	// relay), in percent of one core; nil when not readable.
	DBCPUPercent *float64 `json:"db_cpu_percent,omitempty"`
	DBCPUScope   string   `json:"db_cpu_scope,omitempty"`
	// Method says what exactly is measured.
	Method string `json:"method"`
}

// Baselines are the reference rates measured in the same run.
type Baselines struct {
	// WatermillForwarder is Watermill's default SQL forwarder.
	WatermillForwarder Forwarder `json:"watermill_forwarder"`
	// RawBroker is the broker's own publish rate.
	RawBroker RawBroker `json:"raw_broker"`
}

// Forwarder is the Watermill forwarder baseline.
type Forwarder struct {
	// Events, Seconds and EventsPerSec are as in Drain.
	Events       int     `json:"events"`
	Seconds      float64 `json:"seconds"`
	EventsPerSec float64 `json:"events_per_sec"`
	// Settings names the watermill-sql configuration used.
	Settings string `json:"settings"`
}

// RawBroker is the raw publish baseline.
type RawBroker struct {
	// Events, Seconds and EventsPerSec are as in Drain.
	Events       int     `json:"events"`
	Seconds      float64 `json:"seconds"`
	EventsPerSec float64 `json:"events_per_sec"`
	// Concurrency is how many publishes were in flight.
	Concurrency int `json:"concurrency"`
	// Method is the publisher method used: "Publish", or "PublishAsync"
	// for a publisher that implements outbox.AsyncPublisher.
	Method string `json:"method"`
}

// Ratios compare the one-relay drain rate with the baselines.
type Ratios struct {
	// VsWatermillForwarder is Drain.EventsPerSec / the forwarder's.
	VsWatermillForwarder float64 `json:"vs_watermill_forwarder"`
	// VsRawBroker is Drain.EventsPerSec / the raw broker's.
	VsRawBroker float64 `json:"vs_raw_broker"`
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes one table per cell, for humans.
func (r *Report) WriteTable(w io.Writer) error {
	s := r.Settings
	fmt.Fprintf(w, "outbox bench: %d events of %d bytes over %d keys, relay batch %d; trickle %d events/s for %gs; %d CPUs, %s/%s, %s\n",
		s.Events, s.PayloadBytes, s.Keys, s.BatchSize, s.Rate, s.TrickleSeconds, r.Machine.CPUs, r.Machine.OS, r.Machine.Arch, r.Machine.Go)
	if len(s.RelayFlags) > 0 {
		fmt.Fprintf(w, "relay flags: %s\n", strings.Join(s.RelayFlags, " "))
	}
	for _, c := range r.Cells {
		fmt.Fprintf(w, "\n## %s × %s\n", c.Database, c.Broker)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, args...)...) }
		row("metric", "value")
		row("drain, 1 relay", "%.0f events/s (%.2f s)", c.Drain.EventsPerSec, c.Drain.Seconds)
		if d := c.DrainMulti; d != nil {
			row(fmt.Sprintf("drain, %d relays", d.Relays), "%.0f events/s (%.2f s)", d.EventsPerSec, d.Seconds)
		}
		l := c.Latency
		row(fmt.Sprintf("latency at %d/s, p50 / p90 / p99", l.TargetRate), "%.1f / %.1f / %.1f ms (max %.1f ms, %d of %d events, %.0f/s achieved)",
			l.P50Ms, l.P90Ms, l.P99Ms, l.MaxMs, l.Received-l.WakeEvents, l.Committed, l.AchievedRate)
		row("latency, first event after idle", "%.1f ms (%d events committed before it arrived, not in the percentiles)", l.WakeMs, l.WakeEvents)
		row("relay CPU, drain", "%.0f %% of a core", c.Drain.RelayCPUPercent)
		row("relay CPU, trickle", "%.1f %% of a core", l.RelayCPUPercent)
		if c.IdleRelayCPUPercent != nil {
			row("relay CPU, idle", "%.1f %% of a core", *c.IdleRelayCPUPercent)
		}
		row("relay peak RSS", "%.1f MiB after the drain, %.1f MiB at the end", c.Drain.RelayPeakRSSMB, l.RelayPeakRSSMB)
		if d := c.DrainMulti; d != nil {
			row(fmt.Sprintf("relay CPU, drain, %d relays", d.Relays), "%.0f %% of a core (sum)", d.RelayCPUPercent)
		}
		if c.Drain.DBCPUPercent != nil {
			row("DB CPU, drain", "%.0f %% of a core (%s)", *c.Drain.DBCPUPercent, c.Drain.DBCPUScope)
		} else {
			row("DB CPU, drain", "not readable")
		}
		if l.DBCPUPercent != nil {
			row("DB CPU, trickle", "%.1f %% of a core (%s)", *l.DBCPUPercent, l.DBCPUScope)
		}
		if s.NoBaselines {
			row("baselines", "skipped (--no-baselines)")
			if err := tw.Flush(); err != nil {
				return err
			}
			continue
		}
		f := c.Baselines.WatermillForwarder
		row("baseline: Watermill SQL forwarder", "%.0f events/s (%.2f s; %s)", f.EventsPerSec, f.Seconds, f.Settings)
		rb := c.Baselines.RawBroker
		row(fmt.Sprintf("baseline: raw %s publish", c.Broker), "%.0f events/s (%.2f s; %d in flight, %s)", rb.EventsPerSec, rb.Seconds, rb.Concurrency, rb.Method)
		row("ratio: relay / Watermill forwarder", "%.1f×", c.Ratios.VsWatermillForwarder)
		row("ratio: relay / raw broker", "%.0f %%", 100*c.Ratios.VsRawBroker)
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(r.Cells) > 0 {
		fmt.Fprintf(w, "\nlatency: %s\n", r.Cells[0].Latency.Method)
	}
	return nil
}
