package bench

import (
	"encoding/json"
	"io"
)

// Report is the result of Run, printed as tables or as JSON (--json).
type Report struct {
	// CommandLine is the bench's command line.
	CommandLine string `json:"command_line,omitempty"`
	// Machine describes where the bench ran.
	Machine Machine `json:"machine"`
	// Settings are the bench parameters every cell used.
	Settings Settings `json:"settings"`
	// ElapsedSeconds is how long the whole run took.
	ElapsedSeconds float64 `json:"elapsed_seconds"`
	// Reps is how many interleaved repetitions every figure has.
	Reps int `json:"reps"`
	// RelaySettings are the settings the first relay process of the run
	// logged in its "relay started" line: what it ran with, defaults
	// included.
	RelaySettings map[string]any `json:"relay_settings"`
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
	// BatchSize is the --batch-size given to the relay; 0: its default
	// (RelaySettings says which).
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
	// Baselines are the baselines measured (minimal, forwarder, raw).
	Baselines []string `json:"baselines"`
	// LargeEvents is the backlog of the backlog-scale drain (0: none).
	LargeEvents int `json:"large_events,omitempty"`
	// Poison is the poison scenario's number of poison keys (0: the
	// scenario did not run); PoisonSeconds its trickle length.
	Poison        int     `json:"poison,omitempty"`
	PoisonSeconds float64 `json:"poison_seconds,omitempty"`
	// RelayFlags are the extra flags every relay process ran with.
	RelayFlags []string `json:"relay_flags,omitempty"`
}

// Stat summarizes one figure over the reps.
type Stat struct {
	// Median is the middle value (the mean of the two middle values for
	// an even count).
	Median float64 `json:"median"`
	// Min and Max are the spread.
	Min float64 `json:"min"`
	Max float64 `json:"max"`
	// Values are the reps' values in run order.
	Values []float64 `json:"values"`
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
	// RelaySettings are what this cell's first relay logged it runs with.
	RelaySettings map[string]any `json:"relay_settings"`
	// Drain summarizes the reps' backlog drains by one relay process.
	Drain *DrainStats `json:"drain,omitempty"`
	// DrainMulti summarizes the drains by Settings.Relays processes.
	DrainMulti *DrainStats `json:"drain_multi,omitempty"`
	// Large summarizes the drains of Settings.LargeEvents events.
	Large *DrainStats `json:"large,omitempty"`
	// IdleRelayCPUPercent is the relay's CPU, in percent of one core,
	// while no event is pending.
	IdleRelayCPUPercent *Stat `json:"idle_relay_cpu_percent,omitempty"`
	// Latency summarizes the trickles' commit → broker latency.
	Latency *LatencyStats `json:"latency,omitempty"`
	// Baselines summarize the baselines, measured in the same reps.
	Baselines BaselineStats `json:"baselines"`
	// Ratios are the relay's drain rate over each baseline's, computed
	// per rep and summarized.
	Ratios RatioStats `json:"ratios"`
	// Poison summarizes the poison scenario.
	Poison *PoisonStats `json:"poison,omitempty"`
	// PerRep holds every rep's own figures, in run order.
	PerRep []Rep `json:"per_rep"`
}

// Rep is one repetition's figures.
type Rep struct {
	// Rep numbers the repetition from 1.
	Rep                 int        `json:"rep"`
	Drain               *Drain     `json:"drain,omitempty"`
	IdleRelayCPUPercent *float64   `json:"idle_relay_cpu_percent,omitempty"`
	Latency             *Latency   `json:"latency,omitempty"`
	Large               *Drain     `json:"large,omitempty"`
	DrainMulti          *Drain     `json:"drain_multi,omitempty"`
	MinimalRelay        *Drain     `json:"minimal_relay,omitempty"`
	PollRelay           *Drain     `json:"poll_relay,omitempty"`
	WatermillForwarder  *Forwarder `json:"watermill_forwarder,omitempty"`
	RawAsync            *RawBroker `json:"raw_async,omitempty"`
	Ratios              RepRatios  `json:"ratios"`
	Poison              *Poison    `json:"poison,omitempty"`
}

// RepRatios are one rep's ratios (zero: not measured).
type RepRatios struct {
	VsMinimalRelay float64 `json:"vs_minimal_relay,omitempty"`
	VsPollRelay    float64 `json:"vs_poll_relay,omitempty"`
	VsForwarder    float64 `json:"vs_forwarder,omitempty"`
	VsRawAsync     float64 `json:"vs_raw_async,omitempty"`
	// LargeVsEvents is the large backlog's drain rate over the Events
	// backlog's, same rep.
	LargeVsEvents float64 `json:"large_vs_events,omitempty"`
}

// DrainStats summarizes drains over the reps.
type DrainStats struct {
	Relays                 int    `json:"relays"`
	Events                 int    `json:"events"`
	EventsPerSec           *Stat  `json:"events_per_sec"`
	Seconds                *Stat  `json:"seconds"`
	RelayCPUPercent        *Stat  `json:"relay_cpu_percent"`
	RelayCPUMicrosPerEvent *Stat  `json:"relay_cpu_us_per_event"`
	RelayPeakRSSMB         *Stat  `json:"relay_peak_rss_mb"`
	DBCPUPercent           *Stat  `json:"db_cpu_percent,omitempty"`
	DBCPUScope             string `json:"db_cpu_scope,omitempty"`
	// Definition says what ran (the minimal relay's exact loop).
	Definition string `json:"definition,omitempty"`
}

// LatencyStats summarizes trickles over the reps.
type LatencyStats struct {
	TargetRate int   `json:"target_rate"`
	P50Ms      *Stat `json:"p50_ms"`
	P90Ms      *Stat `json:"p90_ms"`
	P99Ms      *Stat `json:"p99_ms"`
	MaxMs      *Stat `json:"max_ms"`
	WakeMs     *Stat `json:"wake_ms"`
	// WriterP50Ms and WriterP99Ms summarize Latency's.
	WriterP50Ms     *Stat  `json:"writer_p50_ms"`
	WriterP99Ms     *Stat  `json:"writer_p99_ms"`
	AchievedRate    *Stat  `json:"achieved_rate"`
	RelayCPUPercent *Stat  `json:"relay_cpu_percent"`
	RelayPeakRSSMB  *Stat  `json:"relay_peak_rss_mb"`
	DBCPUPercent    *Stat  `json:"db_cpu_percent,omitempty"`
	DBCPUScope      string `json:"db_cpu_scope,omitempty"`
	Method          string `json:"method"`
}

// BaselineStats summarize the baselines over the reps; nil when not
// measured.
type BaselineStats struct {
	// MinimalRelay is the minimal hand-written relay (Definition says
	// exactly what it does), measured as the relay is.
	MinimalRelay *DrainStats `json:"minimal_relay,omitempty"`
	// PollRelay is the polling relay, the baseline of a CDC relay.
	PollRelay *DrainStats `json:"poll_relay,omitempty"`
	// WatermillForwarder is Watermill's default SQL forwarder.
	WatermillForwarder *ForwarderStats `json:"watermill_forwarder,omitempty"`
	// RawAsync is the broker's raw publish rate at InFlight publishes in
	// flight.
	RawAsync *RawStats `json:"raw_async,omitempty"`
}

// ForwarderStats summarize the forwarder baseline.
type ForwarderStats struct {
	Events       int    `json:"events"`
	EventsPerSec *Stat  `json:"events_per_sec"`
	Seconds      *Stat  `json:"seconds"`
	Settings     string `json:"settings"`
}

// RawStats summarize the raw publish baseline.
type RawStats struct {
	Events       int   `json:"events"`
	EventsPerSec *Stat `json:"events_per_sec"`
	Seconds      *Stat `json:"seconds"`
	// InFlight is how many publishes were in flight; InFlightSource says
	// how that number was chosen.
	InFlight       int    `json:"in_flight"`
	InFlightSource string `json:"in_flight_source"`
	// Method is "PublishAsync" (outbox.AsyncPublisher) or "Publish".
	Method string `json:"method"`
}

// RatioStats are the relay's drain rate over each baseline's, per rep,
// summarized; nil when the baseline was not measured.
type RatioStats struct {
	VsMinimalRelay *Stat `json:"vs_minimal_relay,omitempty"`
	VsPollRelay    *Stat `json:"vs_poll_relay,omitempty"`
	VsForwarder    *Stat `json:"vs_forwarder,omitempty"`
	VsRawAsync     *Stat `json:"vs_raw_async,omitempty"`
	// LargeVsEvents is the large backlog's drain rate over the Events
	// backlog's (backlog scale).
	LargeVsEvents *Stat `json:"large_vs_events,omitempty"`
}

// Poison is one rep of the poison scenario.
type Poison struct {
	// Keys is the number of poison events (one per key); Topic the topic
	// the broker refuses.
	Keys  int    `json:"keys"`
	Topic string `json:"topic"`
	// Attempts is the poison events' failed attempts by the end of the
	// trickle; LastError the last one's error as the relay recorded it.
	Attempts  int    `json:"attempts"`
	LastError string `json:"last_error"`
	// Latency is the other keys' trickle.
	Latency Latency `json:"latency"`
}

// PoisonStats summarizes the poison scenario over the reps.
type PoisonStats struct {
	Keys     int           `json:"keys"`
	Attempts *Stat         `json:"attempts"`
	Latency  *LatencyStats `json:"latency"`
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
	// RelayCPUMicrosPerEvent is the relay processes' CPU time per
	// drained event, in µs.
	RelayCPUMicrosPerEvent float64 `json:"relay_cpu_us_per_event"`
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
	// WriterP50Ms and WriterP99Ms are the writer's cost with the relay
	// running: BEGIN, Insert of one event and COMMIT, until COMMIT
	// returned, in ms (every trickle event).
	WriterP50Ms float64 `json:"writer_p50_ms"`
	WriterP99Ms float64 `json:"writer_p99_ms"`
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
	// InFlight is how many publishes were in flight; InFlightSource says
	// how that number was chosen.
	InFlight       int    `json:"in_flight"`
	InFlightSource string `json:"in_flight_source"`
	// Method is the publisher method used: "Publish", or "PublishAsync"
	// for a publisher that implements outbox.AsyncPublisher.
	Method string `json:"method"`
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
