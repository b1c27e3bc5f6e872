package outboxui

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// Chart geometry, in SVG user units.
const (
	chartW, chartH         = 640, 180
	padL, padR, padT, padB = 48, 18, 10, 22
	chartMinutes           = 60
	maxSeries              = 6
)

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#7f7f7f"}

// chart is an inline SVG line chart over the last hour, one line per
// series, drawn server-side.
type chart struct {
	Title, Unit  string
	W, H         int
	Series       []series
	YTicks       []tick
	XTicks       []tick
	Empty        bool
	PlotX, PlotY int
	PlotW, PlotH int
	PlotR, PlotB int
}

type series struct {
	Name, Color, Path string
	Total             string
}

type tick struct {
	Pos   float64
	Label string
}

// charts is the overview's picture set.
type charts struct {
	Rate, RateByType, Lag chart
	Err                   string
	From, To              string
}

// buildCharts turns the activity rows into three charts: deliveries per
// minute by topic and by type, and mean delivery lag by topic. now ends the
// window (the minute that contains it is the last point).
func buildCharts(rows []outboxdriver.ActivityRow, now time.Time) charts {
	end := now.UTC().Truncate(time.Minute)
	start := end.Add(-(chartMinutes - 1) * time.Minute)
	idx := func(m time.Time) int { return int(m.UTC().Sub(start) / time.Minute) }
	byTopic := map[string]*[chartMinutes]float64{}
	byType := map[string]*[chartMinutes]float64{}
	lagSum := map[string]*[chartMinutes]float64{}
	add := func(m map[string]*[chartMinutes]float64, k string, i int, v float64) {
		if m[k] == nil {
			m[k] = &[chartMinutes]float64{}
		}
		m[k][i] += v
	}
	for _, r := range rows {
		i := idx(r.Minute)
		if i < 0 || i >= chartMinutes {
			continue
		}
		add(byTopic, line(r.Topic), i, float64(r.Delivered))
		add(byType, line(r.Type), i, float64(r.Delivered))
		add(lagSum, line(r.Topic), i, r.LagSeconds)
	}
	top := topSeries(byTopic)
	lag := map[string]*[chartMinutes]float64{}
	for _, k := range top {
		var a [chartMinutes]float64
		for i := range a {
			if n := byTopic[k][i]; n > 0 {
				a[i] = lagSum[k][i] / n
			} else {
				a[i] = math.NaN()
			}
		}
		lag[k] = &a
	}
	xt := []tick{}
	for _, back := range []int{60, 45, 30, 15, 0} {
		i := chartMinutes - 1 - back
		if back == 60 {
			i = 0
		}
		label := fmt.Sprintf("-%dm", back)
		if back == 0 {
			label = "now"
		}
		xt = append(xt, tick{Pos: xPos(i), Label: label})
	}
	return charts{
		Rate:       drawChart("Delivered per minute, by topic", "events/min", byTopic, topSeries(byTopic), xt, true),
		RateByType: drawChart("Delivered per minute, by type", "events/min", byType, topSeries(byType), xt, true),
		Lag:        drawChart("Mean delivery lag, by topic", "seconds", lag, top, xt, false),
		From:       fmtTime(start), To: fmtTime(end.Add(time.Minute)),
	}
}

// topSeries returns the keys of the largest series (by total), at most
// maxSeries, largest first, ties by name.
func topSeries(m map[string]*[chartMinutes]float64) []string {
	type kv struct {
		k string
		t float64
	}
	var all []kv
	for k, a := range m {
		t := 0.0
		for _, v := range a {
			t += v
		}
		all = append(all, kv{k, t})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].t > all[j].t || all[i].t == all[j].t && all[i].k < all[j].k })
	var out []string
	for i := 0; i < len(all) && i < maxSeries; i++ {
		out = append(out, all[i].k)
	}
	return out
}

func xPos(i int) float64 {
	return padL + float64(i)*float64(chartW-padL-padR)/float64(chartMinutes-1)
}

// drawChart lays out the series (NaN = no point: the line breaks).
// sumTotal labels each legend entry with the series' sum (counts), else
// with its mean (lag).
func drawChart(title, unit string, data map[string]*[chartMinutes]float64, keys []string, xt []tick, sumTotal bool) chart {
	c := chart{Title: title, Unit: unit, W: chartW, H: chartH, XTicks: xt, Empty: len(keys) == 0,
		PlotX: padL, PlotY: padT, PlotW: chartW - padL - padR, PlotH: chartH - padT - padB,
		PlotR: chartW - padR, PlotB: chartH - padB}
	maxV := 0.0
	for _, k := range keys {
		for _, v := range data[k] {
			if !math.IsNaN(v) && v > maxV {
				maxV = v
			}
		}
	}
	top := niceCeil(maxV)
	y := func(v float64) float64 { return float64(c.PlotB) - v/top*float64(c.PlotH) }
	for _, f := range []float64{0, 0.5, 1} {
		c.YTicks = append(c.YTicks, tick{Pos: y(top * f), Label: fmtNum(top * f)})
	}
	for n, k := range keys {
		var p strings.Builder
		pen := false
		total, points := 0.0, 0
		for i, v := range data[k] {
			if math.IsNaN(v) {
				pen = false
				continue
			}
			total += v
			points++
			if pen {
				fmt.Fprintf(&p, "L%.1f %.1f ", xPos(i), y(v))
			} else { // h0: a lone point still shows as a dot (round caps)
				fmt.Fprintf(&p, "M%.1f %.1f h0 ", xPos(i), y(v))
			}
			pen = true
		}
		label := fmtNum(total) + " in 1h"
		if !sumTotal {
			label = "mean " + fmtNum(total/math.Max(1, float64(points))) + "s"
		}
		c.Series = append(c.Series, series{Name: shorten(k, 40), Color: palette[n%len(palette)],
			Path: strings.TrimSpace(p.String()), Total: label})
	}
	return c
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (at least 1).
func niceCeil(v float64) float64 {
	if v <= 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func fmtNum(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	if v < 10 {
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.1f", v)
}
