package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// checkArgs fails unless the real binary accepts args up to `--help` (every
// command and flag exists).
func checkArgs(t *testing.T, where string, args []string) {
	t.Helper()
	r := runCLI(t, nil, append(args, "--help")...)
	if r.code != 0 {
		t.Fatalf("%s: `outbox %s` is not accepted: %s", where, strings.Join(args, " "), r.stderr)
	}
}

func TestDeployFilesUseRealCommands(t *testing.T) {
	t.Parallel()

	t.Run("systemd unit", func(t *testing.T) {
		t.Parallel()
		unit, err := os.ReadFile("../../docs/deploy/outbox-relay.service")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		sc := bufio.NewScanner(bytes.NewReader(unit))
		for sc.Scan() {
			line := sc.Text()
			if rest, ok := strings.CutPrefix(line, "ExecStart"); ok {
				_, cmdline, _ := strings.Cut(rest, "=")
				fields := strings.Fields(cmdline)
				if !strings.HasSuffix(fields[0], "/outbox") {
					t.Fatalf("unexpected program in %q", line)
				}
				checkArgs(t, "systemd "+line, fields[1:])
				n++
			}
		}
		if n != 2 {
			t.Fatalf("found %d Exec lines, want 2", n)
		}
	})

	t.Run("kubernetes manifests", func(t *testing.T) {
		t.Parallel()
		raw, err := os.ReadFile("../../docs/deploy/kubernetes.yaml")
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		var containers int
		for {
			var doc map[string]any
			if err := dec.Decode(&doc); err != nil {
				if err.Error() == "EOF" {
					break
				}
				t.Fatalf("invalid YAML: %v", err)
			}
			if doc["kind"] != "Deployment" {
				continue
			}
			spec := doc["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
			for _, key := range []string{"initContainers", "containers"} {
				for _, c := range spec[key].([]any) {
					var args []string
					for _, a := range c.(map[string]any)["args"].([]any) {
						args = append(args, a.(string))
					}
					checkArgs(t, "kubernetes "+key, args)
					containers++
				}
			}
		}
		if containers != 2 {
			t.Fatalf("checked %d containers, want 2", containers)
		}
	})
}

var metricRe = regexp.MustCompile(`\boutbox_[a-z_]+`)

// TestDashboardAndAlertsUseRealMetrics keeps the Grafana dashboard and the
// documented alerts in step with the metrics the relay registers.
func TestDashboardAndAlertsUseRealMetrics(t *testing.T) {
	t.Parallel()
	known := map[string]bool{}
	mfs, err := newRelayMetrics("outbox").reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		known[mf.GetName()] = true
	}
	// Vectors without observations are not gathered; add them by name.
	for _, n := range []string{"outbox_published_total", "outbox_publish_failures_total", "outbox_dead_total",
		"outbox_retried_total", "outbox_publish_duration_seconds", "outbox_commit_to_publish_seconds",
		"outbox_pending_events", "outbox_dead_events", "outbox_oldest_pending_age_seconds",
		"outbox_ack_awaiting", "outbox_ack_oldest_awaiting_seconds", "outbox_ack_rejected", "outbox_ack_unacknowledged",
		// Registered by a CDC relay only (relay --mode cdc).
		"outbox_cdc_slot_lag_bytes", "outbox_cdc_slot_lag_seconds", "outbox_cdc_retained_wal_bytes", "outbox_cdc_slot_safe_wal_bytes"} {
		known[n] = true
	}
	raw, err := os.ReadFile("../../docs/grafana/outbox-relay.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard is not JSON: %v", err)
	}
	ops, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	exprs := []string{string(ops)}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, e := range exprs {
		// Every relay of a table exports its table-wide gauges: a sum
		// would count them once per relay.
		for _, g := range []string{"outbox_pending_events", "outbox_dead_events", "outbox_oldest_pending_age_seconds"} {
			if i := strings.Index(e, g); i >= 0 && e != string(ops) && !strings.Contains(e[:i], "max by (table)") {
				t.Errorf("dashboard expression %q: aggregate %s with max by (table)", e, g)
			}
			if strings.Contains(e, "sum("+g) || strings.Contains(e, "max("+g) {
				t.Errorf("%s aggregated with sum() or a bare max(): use max by (table)", g)
			}
		}
		for _, m := range metricRe.FindAllString(e, -1) {
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_sum"), "_count")
			if !known[base] && !strings.HasPrefix(m, "outbox_relay_up") && m != "outbox_list" {
				t.Fatalf("unknown metric %q used in docs or dashboard", m)
			}
		}
	}
}
