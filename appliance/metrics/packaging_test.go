package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

// The dashboard and the alert rules in packaging/ are built on the names in
// testdata/names.txt; these tests keep them from drifting apart.

const (
	dashboardFile = "../../packaging/grafana/firehose.json"
	alertsFile    = "../../packaging/prometheus/firehose-alerts.yml"
)

// metricRef finds metric names in PromQL and prose alike.
var metricRef = regexp.MustCompile(`(?:^|[^A-Za-z0-9_:])((?:broker|firehose|go|process)_[A-Za-z0-9_]+)`)

// generated are names Prometheus itself makes, not /metrics.
var generated = map[string]bool{"up": true}

// unknownNames returns the names in text that /metrics does not serve, and
// how many references it read. A histogram's or summary's _bucket, _sum and
// _count series count as its name.
func unknownNames(text string, known map[string]string) (unknown []string, refs int) {
	for _, m := range metricRef.FindAllStringSubmatch(text, -1) {
		name := m[1]
		refs++
		if _, ok := known[name]; ok || generated[name] {
			continue
		}
		base := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			base = strings.TrimSuffix(base, suffix)
		}
		if typ := known[base]; base != name && (typ == "histogram" || typ == "summary") {
			continue
		}
		unknown = append(unknown, name)
	}
	return unknown, refs
}

// checkNames fails for every name in text that /metrics does not serve and
// returns how many references it checked.
func checkNames(t *testing.T, file, text string, known map[string]string) int {
	t.Helper()
	unknown, refs := unknownNames(text, known)
	for _, name := range unknown {
		t.Errorf("%s uses %s, which /metrics does not serve (appliance/metrics/testdata/names.txt)", file, name)
	}
	return refs
}

// balanced catches a mangled expression: brackets that do not pair up.
func balanced(expr string) bool {
	var stack []rune
	pairs := map[rune]rune{')': '(', ']': '[', '}': '{'}
	inString := false
	for _, r := range expr {
		switch {
		case r == '"':
			inString = !inString
		case inString:
		case r == '(' || r == '[' || r == '{':
			stack = append(stack, r)
		case pairs[r] != 0:
			if len(stack) == 0 || stack[len(stack)-1] != pairs[r] {
				return false
			}
			stack = stack[:len(stack)-1]
		}
	}
	return len(stack) == 0 && !inString
}

func TestDashboardUsesServedNames(t *testing.T) {
	src, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			ID       int    `json:"id"`
			Type     string `json:"type"`
			Title    string `json:"title"`
			GridPos  *struct{ H, W, X, Y int }
			Targets  []struct{ Expr, RefID string }
			Datasrc  any `json:"datasource"`
			FieldCfg any `json:"fieldConfig"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(src, &dash); err != nil {
		t.Fatalf("%s is not JSON Grafana can import: %v", dashboardFile, err)
	}
	if dash.UID == "" || dash.Title == "" {
		t.Errorf("dashboard uid %q title %q", dash.UID, dash.Title)
	}
	known := golden(t)
	ids := map[int]bool{}
	var exprs []string
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d is used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 {
			t.Errorf("panel %q has no place on the grid", p.Title)
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 || p.Datasrc == nil {
			t.Errorf("panel %q has no query or no data source", p.Title)
		}
		for _, tg := range p.Targets {
			if !balanced(tg.Expr) {
				t.Errorf("panel %q: unbalanced expression %q", p.Title, tg.Expr)
			}
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		exprs = append(exprs, v.Definition)
	}
	if _, n := unknownNames(strings.Join(exprs, "\n"), known); n < 30 {
		t.Errorf("found %d metric references in the dashboard's queries; the extraction is broken", n)
	}
	// Queries and prose (descriptions, legends) alike: a name written
	// anywhere is a promise.
	checkNames(t, dashboardFile, string(src), known)
}

// alertExprs returns each rule's expr, single-line or a "|" block.
func alertExprs(src string) []string {
	var exprs []string
	lines := strings.Split(src, "\n")
	for i := 0; i < len(lines); i++ {
		trimmed := strings.TrimSpace(lines[i])
		v, ok := strings.CutPrefix(trimmed, "expr:")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		if v != "|" && v != ">" {
			exprs = append(exprs, v)
			continue
		}
		indent := len(lines[i]) - len(strings.TrimLeft(lines[i], " "))
		var block []string
		for i+1 < len(lines) {
			next := lines[i+1]
			if strings.TrimSpace(next) != "" && len(next)-len(strings.TrimLeft(next, " ")) <= indent {
				break
			}
			block = append(block, strings.TrimSpace(next))
			i++
		}
		exprs = append(exprs, strings.Join(block, " "))
	}
	return exprs
}

func TestAlertsUseServedNames(t *testing.T) {
	src, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	text := string(src)
	if strings.Contains(text, "\t") {
		t.Errorf("%s contains a tab, which YAML does not allow for indentation", alertsFile)
	}
	rules := strings.Count(text, "- alert: ")
	exprs := alertExprs(text)
	if rules < 5 || len(exprs) != rules {
		t.Fatalf("%s: %d rules, %d expressions; want one expression per rule", alertsFile, rules, len(exprs))
	}
	for _, want := range []string{"severity:", "summary:"} {
		if n := strings.Count(text, want); n != rules {
			t.Errorf("%s: %d rules but %d %q", alertsFile, rules, n, want)
		}
	}
	for _, e := range exprs {
		if !balanced(e) || e == "" {
			t.Errorf("%s: unbalanced or empty expression %q", alertsFile, e)
		}
	}
	// What the issue asks to be alerted on.
	joined := strings.Join(exprs, "\n")
	for _, must := range []string{"firehose_tls_certificate_expiry_timestamp_seconds", "firehose_gerrit_streaming", "firehose_deliveries_dropped_total"} {
		if !strings.Contains(joined, must) {
			t.Errorf("%s has no rule on %s", alertsFile, must)
		}
	}
	known := golden(t)
	if _, n := unknownNames(joined, known); n < rules {
		t.Errorf("found %d metric references in %d rules; the extraction is broken", n, rules)
	}
	checkNames(t, alertsFile, text, known)
}

// The checks above must be able to fail.
func TestNameCheckCatchesUnknown(t *testing.T) {
	known := map[string]string{"firehose_reload_duration_seconds": "histogram", "broker_uptime": "gauge"}
	for _, c := range []struct {
		text    string
		unknown string
	}{
		{`rate(firehose_reload_duration_seconds_bucket[5m])`, ""},
		{`broker_uptime > 0 and up == 1`, ""},
		{`broker_uptimes > 0`, "broker_uptimes"},
		{`sum(firehose_renamed_total)`, "firehose_renamed_total"},
		{`broker_uptime_count`, "broker_uptime_count"}, // not a histogram
	} {
		if got, _ := unknownNames(c.text, known); strings.Join(got, ",") != c.unknown {
			t.Errorf("%q: unknown %q, want %q", c.text, got, c.unknown)
		}
	}
	if balanced(`sum(rate(x[5m])`) || !balanced(`sum by (a) (rate(x{a="("}[5m]))`) {
		t.Error("balanced is wrong")
	}
}
