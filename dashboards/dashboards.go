// Package dashboards holds Switchboard's Grafana dashboard and Prometheus
// alert rules, embedded so that the local target and the Pulumi stacks load
// the same files ops import. alerts.yaml is written by hand; switchboard.json
// and grafana-alerting.yaml are generated from panels.go and alerts.yaml.
package dashboards

import (
	_ "embed"
	"fmt"
	"maps"
	"strings"

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

// AlertRules lists every rule of alerts.yaml, whatever its group.
func AlertRules() ([]grafana.Rule, error) {
	rules, err := grafana.ParseRules(Alerts)
	if err != nil {
		return nil, err
	}
	var all []grafana.Rule
	for _, g := range rules.Groups {
		all = append(all, g.Rules...)
	}
	return all, nil
}

// minimumExpr and minimumText are how alerts.yaml states the instance
// minimum of SwitchboardInstancesBelowMinimum: the default minReplicas.
const (
	minimumAlert = "SwitchboardInstancesBelowMinimum"
	minimumExpr  = ") < 3"
	minimumText  = "Fewer than 3 "
)

// RulesFor returns the alert rules with SwitchboardInstancesBelowMinimum
// set to min instances, for a deployment whose minReplicas is min.
func RulesFor(min int) (grafana.Rules, error) {
	rules, err := grafana.ParseRules(Alerts)
	if err != nil {
		return grafana.Rules{}, err
	}
	for _, g := range rules.Groups {
		for i, r := range g.Rules {
			if r.Alert != minimumAlert {
				continue
			}
			if !strings.Contains(r.Expr, minimumExpr) || !strings.Contains(r.Annotations["description"], minimumText) {
				return grafana.Rules{}, fmt.Errorf("%s no longer states its minimum as %q and %q: update RulesFor", minimumAlert, minimumExpr, minimumText)
			}
			ann := maps.Clone(r.Annotations)
			ann["description"] = strings.Replace(ann["description"], minimumText, fmt.Sprintf("Fewer than %d ", min), 1)
			g.Rules[i].Expr = strings.Replace(r.Expr, minimumExpr, fmt.Sprintf(") < %d", min), 1)
			g.Rules[i].Annotations = ann
			return rules, nil
		}
	}
	return grafana.Rules{}, fmt.Errorf("alerts.yaml has no %s", minimumAlert)
}
