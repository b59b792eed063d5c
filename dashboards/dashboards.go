// Package dashboards holds Switchboard's Grafana dashboard and Prometheus
// alert rules, embedded so that the local target and the Pulumi stacks load
// the same files ops import. alerts.yaml is written by hand; switchboard.json
// and grafana-alerting.yaml are generated from panels.go and alerts.yaml.
package dashboards

import (
	_ "embed"

	"github.com/switchboard-dev/switchboard/dashboards/grafana"
)

//go:generate go run ./gen

// Alerts is alerts.yaml, the Prometheus rule file.
//
//go:embed alerts.yaml
var Alerts []byte

// Dashboard is switchboard.json, the importable Grafana dashboard.
//
//go:embed switchboard.json
var Dashboard []byte

// GrafanaAlerting is grafana-alerting.yaml, the alerts as Grafana-managed rules.
//
//go:embed grafana-alerting.yaml
var GrafanaAlerting []byte

// Generated are the generated files by name, as the generator writes them
// now; a test holds the committed files to it.
func Generated() (map[string][]byte, error) {
	dash, err := grafana.Render(Switchboard())
	if err != nil {
		return nil, err
	}
	alerting, err := grafana.Alerting(Alerts, grafana.AlertingOptions{Folder: "Switchboard", OrgID: 1})
	if err != nil {
		return nil, err
	}
	return map[string][]byte{"switchboard.json": dash, "grafana-alerting.yaml": alerting}, nil
}
