package bench

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// statOf summarizes values (nil for none).
func statOf(values []float64) *Stat {
	if len(values) == 0 {
		return nil
	}
	s := slices.Clone(values)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return &Stat{Median: med, Min: s[0], Max: s[len(s)-1], Values: slices.Clone(values)}
}

// collect returns f of every item for which ok holds.
func collect[T any](items []T, f func(T) (float64, bool)) []float64 {
	var out []float64
	for _, it := range items {
		if v, ok := f(it); ok {
			out = append(out, v)
		}
	}
	return out
}

// statBy summarizes f over items.
func statBy[T any](items []*T, f func(*T) float64) *Stat {
	return statOf(collect(items, func(it *T) (float64, bool) { return f(it), true }))
}

// optional summarizes the non-nil values f returns.
func optional[T any](items []*T, f func(*T) *float64) *Stat {
	return statOf(collect(items, func(it *T) (float64, bool) {
		if v := f(it); v != nil {
			return *v, true
		}
		return 0, false
	}))
}

func drainStats(have []*Drain) *DrainStats {
	if len(have) == 0 {
		return nil
	}
	out := &DrainStats{
		Relays: have[0].Relays, Events: have[0].Events,
		EventsPerSec:           statBy(have, func(d *Drain) float64 { return d.EventsPerSec }),
		Seconds:                statBy(have, func(d *Drain) float64 { return d.Seconds }),
		RelayCPUPercent:        statBy(have, func(d *Drain) float64 { return d.RelayCPUPercent }),
		RelayCPUMicrosPerEvent: statBy(have, func(d *Drain) float64 { return d.RelayCPUMicrosPerEvent }),
		RelayPeakRSSMB:         statBy(have, func(d *Drain) float64 { return d.RelayPeakRSSMB }),
		DBCPUPercent:           optional(have, func(d *Drain) *float64 { return d.DBCPUPercent }),
	}
	for _, d := range have {
		out.DBCPUScope = max(out.DBCPUScope, d.DBCPUScope)
	}
	return out
}

func latencyStats(have []*Latency) *LatencyStats {
	if len(have) == 0 {
		return nil
	}
	out := &LatencyStats{
		TargetRate:      have[0].TargetRate,
		P50Ms:           statBy(have, func(l *Latency) float64 { return l.P50Ms }),
		P90Ms:           statBy(have, func(l *Latency) float64 { return l.P90Ms }),
		P99Ms:           statBy(have, func(l *Latency) float64 { return l.P99Ms }),
		MaxMs:           statBy(have, func(l *Latency) float64 { return l.MaxMs }),
		WakeMs:          statBy(have, func(l *Latency) float64 { return l.WakeMs }),
		WriterP50Ms:     statBy(have, func(l *Latency) float64 { return l.WriterP50Ms }),
		WriterP99Ms:     statBy(have, func(l *Latency) float64 { return l.WriterP99Ms }),
		AchievedRate:    statBy(have, func(l *Latency) float64 { return l.AchievedRate }),
		RelayCPUPercent: statBy(have, func(l *Latency) float64 { return l.RelayCPUPercent }),
		RelayPeakRSSMB:  statBy(have, func(l *Latency) float64 { return l.RelayPeakRSSMB }),
		DBCPUPercent:    optional(have, func(l *Latency) *float64 { return l.DBCPUPercent }),
		Method:          have[0].Method,
	}
	for _, l := range have {
		out.DBCPUScope = max(out.DBCPUScope, l.DBCPUScope)
	}
	return out
}

// summarize fills the cell's medians and spreads from PerRep.
func (c *CellReport) summarize() {
	reps := c.PerRep
	c.Drain = drainStats(pluck(reps, func(r Rep) *Drain { return r.Drain }))
	c.DrainMulti = drainStats(pluck(reps, func(r Rep) *Drain { return r.DrainMulti }))
	c.Large = drainStats(pluck(reps, func(r Rep) *Drain { return r.Large }))
	c.Baselines.MinimalRelay = drainStats(pluck(reps, func(r Rep) *Drain { return r.MinimalRelay }))
	if c.Baselines.MinimalRelay != nil {
		c.Baselines.MinimalRelay.Definition = MinimalDefinition
	}
	c.Baselines.PollRelay = drainStats(pluck(reps, func(r Rep) *Drain { return r.PollRelay }))
	c.IdleRelayCPUPercent = optional(refs(reps), func(r *Rep) *float64 { return r.IdleRelayCPUPercent })
	c.Latency = latencyStats(pluck(reps, func(r Rep) *Latency { return r.Latency }))

	if fwd := pluck(reps, func(r Rep) *Forwarder { return r.WatermillForwarder }); len(fwd) > 0 {
		c.Baselines.WatermillForwarder = &ForwarderStats{Events: fwd[0].Events, Settings: fwd[0].Settings,
			EventsPerSec: statBy(fwd, func(f *Forwarder) float64 { return f.EventsPerSec }),
			Seconds:      statBy(fwd, func(f *Forwarder) float64 { return f.Seconds }),
		}
	}
	if raw := pluck(reps, func(r Rep) *RawBroker { return r.RawAsync }); len(raw) > 0 {
		c.Baselines.RawAsync = &RawStats{Events: raw[0].Events, InFlight: raw[0].InFlight, InFlightSource: raw[0].InFlightSource, Method: raw[0].Method,
			EventsPerSec: statBy(raw, func(r *RawBroker) float64 { return r.EventsPerSec }),
			Seconds:      statBy(raw, func(r *RawBroker) float64 { return r.Seconds }),
		}
	}
	ratio := func(f func(RepRatios) float64) *Stat {
		return statOf(collect(reps, func(r Rep) (float64, bool) { v := f(r.Ratios); return v, v > 0 }))
	}
	c.Ratios = RatioStats{
		VsMinimalRelay: ratio(func(r RepRatios) float64 { return r.VsMinimalRelay }),
		VsPollRelay:    ratio(func(r RepRatios) float64 { return r.VsPollRelay }),
		VsForwarder:    ratio(func(r RepRatios) float64 { return r.VsForwarder }),
		VsRawAsync:     ratio(func(r RepRatios) float64 { return r.VsRawAsync }),
		LargeVsEvents:  ratio(func(r RepRatios) float64 { return r.LargeVsEvents }),
	}
	if ps := pluck(reps, func(r Rep) *Poison { return r.Poison }); len(ps) > 0 {
		c.Poison = &PoisonStats{Keys: ps[0].Keys,
			Latency:  latencyStats(pluck(ps, func(p *Poison) *Latency { return &p.Latency })),
			Attempts: statBy(ps, func(p *Poison) float64 { return float64(p.Attempts) })}
	}
}

// pluck returns f of every item, leaving out nils.
func pluck[R, T any](items []R, f func(R) *T) []*T {
	out := make([]*T, 0, len(items))
	for _, r := range items {
		if v := f(r); v != nil {
			out = append(out, v)
		}
	}
	return out
}

// refs returns pointers to the reps.
func refs(reps []Rep) []*Rep {
	out := make([]*Rep, len(reps))
	for i := range reps {
		out[i] = &reps[i]
	}
	return out
}

// WriteTable writes one table per cell, for humans: the median of every
// figure and its spread over the reps.
func (r *Report) WriteTable(w io.Writer) error {
	s := r.Settings
	what := fmt.Sprintf("%d events of %d bytes over %d keys", s.Events, s.PayloadBytes, s.Keys)
	if s.Poison > 0 {
		what = fmt.Sprintf("poison scenario: %d poison keys, other keys at %d events/s for %gs", s.Poison, s.Rate, s.PoisonSeconds)
	}
	fmt.Fprintf(w, "outbox bench: %s; %d interleaved rep(s) in %.0f s; %d CPUs, %s/%s, %s\n",
		what, r.Reps, r.ElapsedSeconds, r.Machine.CPUs, r.Machine.OS, r.Machine.Arch, r.Machine.Go)
	if r.CommandLine != "" {
		fmt.Fprintf(w, "command: %s\n", r.CommandLine)
	}
	if len(s.RelayFlags) > 0 {
		fmt.Fprintf(w, "relay flags: %s\n", strings.Join(s.RelayFlags, " "))
	} else {
		fmt.Fprintf(w, "relay flags: none (the defaults)\n")
	}
	fmt.Fprintf(w, "relay settings in effect: %s\n", formatSettings(r.RelaySettings))
	for _, c := range r.Cells {
		fmt.Fprintf(w, "\n## %s × %s (median of %d; spread min .. max)\n", c.Database, c.Broker, len(c.PerRep))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		row := func(k, unit string, st *Stat, f string) {
			if st == nil {
				return
			}
			fmt.Fprintf(tw, "%s\t"+f+" %s\t("+f+" .. "+f+")\n", k, st.Median, unit, st.Min, st.Max)
		}
		fmt.Fprintf(tw, "metric\tmedian\tspread\n")
		if d := c.Drain; d != nil {
			row("drain, 1 relay", "events/s", d.EventsPerSec, "%.0f")
		}
		if b := c.Baselines.MinimalRelay; b != nil {
			row("baseline: minimal relay", "events/s", b.EventsPerSec, "%.0f")
		}
		if b := c.Baselines.PollRelay; b != nil {
			row("baseline: polling relay", "events/s", b.EventsPerSec, "%.0f")
		}
		if b := c.Baselines.WatermillForwarder; b != nil {
			row("baseline: Watermill SQL forwarder", "events/s", b.EventsPerSec, "%.0f")
		}
		if b := c.Baselines.RawAsync; b != nil {
			row(fmt.Sprintf("baseline: raw %s %s, %d in flight", c.Broker, b.Method, b.InFlight), "events/s", b.EventsPerSec, "%.0f")
		}
		row("ratio: relay / minimal relay", "×", c.Ratios.VsMinimalRelay, "%.2f")
		row("ratio: relay / polling relay", "×", c.Ratios.VsPollRelay, "%.2f")
		row("ratio: relay / Watermill forwarder", "×", c.Ratios.VsForwarder, "%.1f")
		row("ratio: relay / raw async", "×", c.Ratios.VsRawAsync, "%.2f")
		if d := c.Large; d != nil {
			row(fmt.Sprintf("drain of %d events", d.Events), "events/s", d.EventsPerSec, "%.0f")
			row(fmt.Sprintf("ratio: %d-event / %d-event drain", d.Events, r.Settings.Events), "×", c.Ratios.LargeVsEvents, "%.2f")
		}
		if d := c.DrainMulti; d != nil {
			row(fmt.Sprintf("drain, %d relays", d.Relays), "events/s", d.EventsPerSec, "%.0f")
		}
		if l := c.Latency; l != nil {
			row(fmt.Sprintf("latency at %d/s, p50", l.TargetRate), "ms", l.P50Ms, "%.1f")
			row(fmt.Sprintf("latency at %d/s, p99", l.TargetRate), "ms", l.P99Ms, "%.1f")
			row("latency, first event after idle", "ms", l.WakeMs, "%.0f")
			row("writer BEGIN + Insert + COMMIT, p50", "ms", l.WriterP50Ms, "%.2f")
			row("writer BEGIN + Insert + COMMIT, p99", "ms", l.WriterP99Ms, "%.2f")
		}
		if d := c.Drain; d != nil {
			row("relay CPU, drain", "% of a core", d.RelayCPUPercent, "%.0f")
			row("relay CPU per drained event", "µs", d.RelayCPUMicrosPerEvent, "%.1f")
		}
		if b := c.Baselines.MinimalRelay; b != nil {
			row("minimal relay CPU per drained event", "µs", b.RelayCPUMicrosPerEvent, "%.1f")
		}
		if c.Drain != nil && c.Drain.DBCPUPercent != nil {
			row("DB CPU, drain ("+c.Drain.DBCPUScope+")", "% of a core", c.Drain.DBCPUPercent, "%.0f")
		}
		if l := c.Latency; l != nil {
			row("relay CPU, trickle", "% of a core", l.RelayCPUPercent, "%.1f")
		}
		row("relay CPU, idle", "% of a core", c.IdleRelayCPUPercent, "%.1f")
		if l := c.Latency; l != nil {
			row("relay peak RSS", "MiB", l.RelayPeakRSSMB, "%.1f")
		} else if d := c.Drain; d != nil {
			row("relay peak RSS", "MiB", d.RelayPeakRSSMB, "%.1f")
		}
		if p := c.Poison; p != nil && p.Latency != nil {
			row(fmt.Sprintf("other keys at %d/s with %d poison keys, p50", p.Latency.TargetRate, p.Keys), "ms", p.Latency.P50Ms, "%.1f")
			row(fmt.Sprintf("other keys at %d/s with %d poison keys, p99", p.Latency.TargetRate, p.Keys), "ms", p.Latency.P99Ms, "%.1f")
			row("other keys, max", "ms", p.Latency.MaxMs, "%.1f")
			row("poison events' failed attempts", "", p.Attempts, "%.0f")
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if len(c.PerRep) > 0 {
			if p := c.PerRep[len(c.PerRep)-1].Poison; p != nil {
				fmt.Fprintf(w, "poison events' last error: %s\n", p.LastError)
			}
		}
	}
	if len(r.Cells) > 0 {
		if l := r.Cells[0].Latency; l != nil {
			fmt.Fprintf(w, "\nlatency: %s\n", l.Method)
		}
		if r.Cells[0].Baselines.MinimalRelay != nil {
			fmt.Fprintf(w, "minimal relay: %s\n", MinimalDefinition)
		}
	}
	return nil
}

func formatSettings(m map[string]any) string {
	if len(m) == 0 {
		return "unknown (the relay logged none)"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		v := fmt.Sprint(m[k])
		if f, ok := m[k].(float64); ok {
			v = strconv.FormatFloat(f, 'f', -1, 64)
		}
		parts[i] = k + "=" + v
	}
	return strings.Join(parts, " ")
}
