package dashboards_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/alerting"
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/expr"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/switchboard-dev/switchboard/dashboards"
	"github.com/switchboard-dev/switchboard/dashboards/grafana"
)

// The point of generating with the Grafana Foundation SDK: the committed
// documents are exactly what the SDK's schema types hold. Each is decoded
// with the SDK's strict decoders (unknown field, wrong type or missing
// required field: an error; panel options, field config and queries by
// their plugin's type) and must re-encode to the same document, which also
// catches a field where the strict decoders are lenient (fieldConfig
// defaults). Then a field the schema lacks, hand-added anywhere, must fail.
func init() { plugins.RegisterDefaultPlugins() }

// strict decodes with the SDK's strict decoder. In v0.0.22 that decoder
// returns its empty error list as a non-nil error when it finds nothing, and
// on that "error" drops the panel options and queries it decoded; so an
// empty list is success here, and the value compared after re-encoding is
// the one the SDK's ordinary decoder (variant-aware, never strict) reads.
func strict(v interface{ UnmarshalJSONStrict([]byte) error }, raw []byte) error {
	err := v.UnmarshalJSONStrict(raw)
	var errs cog.BuildErrors
	if errors.As(err, &errs) && len(errs) == 0 {
		return nil
	}
	return err
}

// strictDashboard checks a switchboard.json: the import envelope, then the
// dashboard model against the SDK's dashboard.Dashboard.
func strictDashboard(doc []byte) error {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(doc, &top); err != nil {
		return err
	}
	for _, k := range grafana.Envelope {
		if top[k] == nil {
			return fmt.Errorf("no %s: the import envelope is missing", k)
		}
		delete(top, k)
	}
	model, err := json.Marshal(top)
	if err != nil {
		return err
	}
	if err := strict(&dashboard.Dashboard{}, model); err != nil {
		return fmt.Errorf("strict decode into dashboard.Dashboard: %w", err)
	}
	var d dashboard.Dashboard
	if err := json.Unmarshal(model, &d); err != nil {
		return fmt.Errorf("decode into dashboard.Dashboard: %w", err)
	}
	for _, p := range d.Panels {
		if p.Panel == nil {
			continue
		}
		for _, q := range p.Panel.Targets {
			if _, ok := q.(*prometheus.Dataquery); !ok {
				return fmt.Errorf("panel %q: query decoded as %T, not a prometheus.Dataquery", deref(p.Panel.Title), q)
			}
		}
	}
	again, err := json.Marshal(d)
	if err != nil {
		return err
	}
	return sameJSON(model, again)
}

// strictAlerting checks a grafana-alerting.yaml: each rule, with the keys
// its group states put back, against the SDK's alerting.Rule.
func strictAlerting(doc []byte) (int, error) {
	var file struct {
		APIVersion int `yaml:"apiVersion"`
		Groups     []struct {
			OrgID    int64            `yaml:"orgId"`
			Name     string           `yaml:"name"`
			Folder   string           `yaml:"folder"`
			Interval string           `yaml:"interval"`
			Rules    []map[string]any `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil {
		return 0, err
	}
	if file.APIVersion != 1 {
		return 0, fmt.Errorf("apiVersion %d, want 1", file.APIVersion)
	}
	n := 0
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			n++
			for _, k := range grafana.GroupKeys {
				if _, ok := r[k]; ok {
					return n, fmt.Errorf("group %s: rule %v states %s, which the file format has on the group", g.Name, r["title"], k)
				}
			}
			with := map[string]any{"orgID": g.OrgID, "ruleGroup": g.Name, "folderUID": ""}
			for k, v := range r {
				with[k] = v
			}
			raw, err := json.Marshal(with)
			if err != nil {
				return n, err
			}
			if err := strict(&alerting.Rule{}, raw); err != nil {
				return n, fmt.Errorf("group %s: rule %v: strict decode into alerting.Rule: %w", g.Name, r["title"], err)
			}
			var rule alerting.Rule
			if err := json.Unmarshal(raw, &rule); err != nil {
				return n, fmt.Errorf("group %s: rule %v: decode into alerting.Rule: %w", g.Name, r["title"], err)
			}
			if err := rule.Validate(); err != nil {
				return n, fmt.Errorf("group %s: rule %v: %w", g.Name, r["title"], err)
			}
			for _, q := range rule.Data {
				switch q.Model.(type) {
				case *prometheus.Dataquery, *expr.Expr:
				default:
					return n, fmt.Errorf("rule %v: query %s decoded as %T, not a prometheus or expression query", r["title"], deref(q.RefId), q.Model)
				}
			}
			again, err := json.Marshal(rule)
			if err != nil {
				return n, err
			}
			if err := sameJSON(raw, again); err != nil {
				return n, fmt.Errorf("rule %v: %w", r["title"], err)
			}
		}
	}
	return n, nil
}

func TestDashboardIsTheSDKsSchema(t *testing.T) {
	if err := strictDashboard(dashboards.Dashboard); err != nil {
		t.Fatalf("switchboard.json: %v", err)
	}
	// A field the schema lacks, wherever it is hand-added, and a misspelt one.
	for _, tc := range []struct {
		where string
		edit  func(d map[string]any)
	}{
		{"the dashboard", func(d map[string]any) { d["handAdded"] = true }},
		{"a row", func(d map[string]any) { panel(d, "row")["handAdded"] = true }},
		{"a panel", func(d map[string]any) { panel(d, grafana.TimeSeries)["handAdded"] = true }},
		{"a panel, misspelt", func(d map[string]any) { rename(panel(d, grafana.TimeSeries), "gridPos", "gridpos") }},
		{"a query", func(d map[string]any) { first(panel(d, grafana.TimeSeries)["targets"])["handAdded"] = true }},
		{"a query, misspelt", func(d map[string]any) { rename(first(panel(d, grafana.Stat)["targets"]), "legendFormat", "legend") }},
		{"time series options", func(d map[string]any) { obj(panel(d, grafana.TimeSeries)["options"])["handAdded"] = true }},
		{"time series legend", func(d map[string]any) {
			obj(obj(panel(d, grafana.TimeSeries)["options"])["legend"])["handAdded"] = true
		}},
		{"stat options", func(d map[string]any) { obj(panel(d, grafana.Stat)["options"])["handAdded"] = true }},
		{"heatmap options", func(d map[string]any) { obj(panel(d, grafana.Heatmap)["options"])["handAdded"] = true }},
		{"field config defaults", func(d map[string]any) {
			obj(obj(panel(d, grafana.TimeSeries)["fieldConfig"])["defaults"])["handAdded"] = true
		}},
		{"time series custom field config", func(d map[string]any) {
			obj(obj(obj(panel(d, grafana.TimeSeries)["fieldConfig"])["defaults"])["custom"])["handAdded"] = true
		}},
		{"a variable", func(d map[string]any) { first(obj(d["templating"])["list"])["handAdded"] = true }},
		{"a variable's current option", func(d map[string]any) {
			obj(first(obj(d["templating"])["list"])["current"])["handAdded"] = true
		}},
		{"the time range", func(d map[string]any) { obj(d["time"])["handAdded"] = true }},
		{"a grid position", func(d map[string]any) { obj(panel(d, grafana.Heatmap)["gridPos"])["handAdded"] = true }},
	} {
		t.Run(tc.where, func(t *testing.T) {
			var d map[string]any
			if err := json.Unmarshal(dashboards.Dashboard, &d); err != nil {
				t.Fatal(err)
			}
			tc.edit(d)
			doc, err := json.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			err = strictDashboard(doc)
			if err == nil {
				t.Fatal("accepted a field the SDK's dashboard schema does not have")
			}
			t.Log(err)
		})
	}
}

func TestGrafanaAlertingIsTheSDKsSchema(t *testing.T) {
	n, err := strictAlerting(dashboards.GrafanaAlerting)
	if err != nil {
		t.Fatalf("grafana-alerting.yaml: %v", err)
	}
	if all := len(alerts(t)); n != all {
		t.Fatalf("%d rules checked, alerts.yaml has %d", n, all)
	}
	for _, tc := range []struct {
		where string
		edit  func(r map[string]any)
	}{
		{"a rule", func(r map[string]any) { r["handAdded"] = true }},
		{"a rule, misspelt", func(r map[string]any) { rename(r, "noDataState", "noDataStatus") }},
		{"a query", func(r map[string]any) { first(r["data"])["handAdded"] = true }},
		{"a relative time range", func(r map[string]any) { obj(first(r["data"])["relativeTimeRange"])["handAdded"] = true }},
		{"a Prometheus query model", func(r map[string]any) { obj(first(r["data"])["model"])["handAdded"] = true }},
		{"an expression model", func(r map[string]any) { obj(obj(r["data"].([]any)[1])["model"])["handAdded"] = true }},
	} {
		t.Run(tc.where, func(t *testing.T) {
			var file map[string]any
			if err := yaml.Unmarshal(dashboards.GrafanaAlerting, &file); err != nil {
				t.Fatal(err)
			}
			tc.edit(first(obj(first(file["groups"]))["rules"]))
			doc, err := yaml.Marshal(file)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := strictAlerting(doc); err == nil {
				t.Fatal("accepted a field the SDK's alerting schema does not have")
			} else {
				t.Log(err)
			}
		})
	}
}

// sameJSON compares two JSON documents by value.
func sameJSON(want, got []byte) error {
	var a, b any
	if err := json.Unmarshal(want, &a); err != nil {
		return err
	}
	if err := json.Unmarshal(got, &b); err != nil {
		return err
	}
	if !reflect.DeepEqual(a, b) {
		return fmt.Errorf("the SDK's types do not re-encode it as written: %s", firstDifference("", a, b))
	}
	return nil
}

func firstDifference(path string, a, b any) string {
	switch a := a.(type) {
	case map[string]any:
		bm, ok := b.(map[string]any)
		if !ok {
			break
		}
		keys := make([]string, 0, len(a)+len(bm))
		for k := range a {
			keys = append(keys, k)
		}
		for k := range bm {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range slices.Compact(keys) {
			av, aok := a[k]
			bv, bok := bm[k]
			switch {
			case !aok:
				return path + "." + k + " added"
			case !bok:
				return path + "." + k + " dropped (the schema has no such field)"
			case !reflect.DeepEqual(av, bv):
				return firstDifference(path+"."+k, av, bv)
			}
		}
	case []any:
		bs, ok := b.([]any)
		if !ok || len(a) != len(bs) {
			break
		}
		for i := range a {
			if !reflect.DeepEqual(a[i], bs[i]) {
				return firstDifference(fmt.Sprintf("%s[%d]", path, i), a[i], bs[i])
			}
		}
	}
	return fmt.Sprintf("%s: %v became %v", path, a, b)
}

func obj(v any) map[string]any { return v.(map[string]any) }

func first(v any) map[string]any { return v.([]any)[0].(map[string]any) }

// panel is the first panel of a kind ("row" for a row).
func panel(d map[string]any, kind string) map[string]any {
	for _, p := range d["panels"].([]any) {
		if obj(p)["type"] == kind {
			return obj(p)
		}
	}
	panic("no " + kind + " panel")
}

func rename(m map[string]any, from, to string) {
	v, ok := m[from]
	if !ok {
		panic("no " + from)
	}
	delete(m, from)
	m[to] = v
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
