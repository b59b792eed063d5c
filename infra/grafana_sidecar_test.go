package main

import (
	"encoding/json"
	"testing"

	"github.com/switchboard-dev/switchboard/infra/observability"
	"github.com/switchboard-dev/switchboard/infra/stackconfig"
)

// kube-prometheus-stack's Grafana sidecar loads a dashboard ConfigMap only
// if it carries the label grafana.sidecar.dashboards.label with the value
// .labelValue. The pinned chart is not available offline, so its defaults
// are cited: prometheus-community/helm-charts,
// charts/kube-prometheus-stack/values.yaml at commit
// a064fc60bca54b09eb35aa3be0e71239c1dadce3 (the release of chart 79.5.0),
// lines 1370-1374:
//
//	sidecar:
//	  dashboards:
//	    enabled: true
//	    label: grafana_dashboard
//	    labelValue: "1"
//	    # Allow discovery in all namespaces for dashboards
//	    searchNamespace: ALL
const (
	citedChart           = "79.5.0"
	chartDashboardLabel  = "grafana_dashboard"
	chartDashboardValue  = "1"
	chartSearchNamespace = "ALL"
)

func TestDashboardConfigMapIsSelectedByGrafanasSidecar(t *testing.T) {
	if v := stackconfig.Defaults().PrometheusStackVer; v != citedChart {
		t.Fatalf("kube-prometheus-stack is pinned at %s, the sidecar defaults cited here are those of %s: read the new chart's values.yaml (grafana.sidecar.dashboards) and update this test", v, citedChart)
	}
	// An existing kube-prometheus-stack installed with its default values
	// selects the ConfigMap: its label is the chart's default.
	if observability.DashboardLabel != chartDashboardLabel || observability.DashboardLabelValue != chartDashboardValue {
		t.Errorf("dashboard label %s=%s, chart %s's sidecar selects %s=%s", observability.DashboardLabel, observability.DashboardLabelValue, citedChart, chartDashboardLabel, chartDashboardValue)
	}
	for _, tc := range []struct {
		name    string
		config  map[string]string
		install bool
	}{
		{"kind, existing", kindConfig("observability", stackconfig.Existing), false},
		{"kind, install", kindConfig("observability", stackconfig.Install), true},
		{"aws, install", awsConfig(), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustRun(t, tc.config)
			label, value := chartDashboardLabel, chartDashboardValue
			if tc.install {
				// The release's own sidecar settings select the ConfigMap.
				dash, _ := get(promStack(t, s), "values.grafana.sidecar.dashboards").(map[string]any)
				if dash["enabled"] != true || dash["searchNamespace"] != chartSearchNamespace {
					t.Errorf("grafana.sidecar.dashboards %v: want enabled, searching every namespace (the ConfigMap is in the chat's)", dash)
				}
				label, _ = dash["label"].(string)
				value, _ = dash["labelValue"].(string)
				if label == "" || value == "" {
					t.Fatalf("grafana.sidecar.dashboards %v: want the label and its value stated", dash)
				}
			}
			cm := s.one(t, "core/v1:ConfigMap", "switchboard-dashboard")
			labels, _ := get(cm, "metadata.labels").(map[string]any)
			if labels[label] != value {
				t.Errorf("dashboard ConfigMap labels %v: the sidecar selects %s=%s", labels, label, value)
			}
			var d struct{ UID string }
			data, _ := get(cm, "data").(map[string]any)
			j, _ := data["switchboard.json"].(string)
			if err := json.Unmarshal([]byte(j), &d); err != nil || d.UID != "switchboard" {
				t.Errorf("dashboard ConfigMap: switchboard.json (uid %q, %v): want the dashboard", d.UID, err)
			}
		})
	}
}
