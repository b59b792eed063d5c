// Package dashboards holds Switchboard's Grafana dashboards and Prometheus
// alert rules, embedded so that the local target and the Pulumi stacks load
// the same files ops import.
package dashboards

import _ "embed"

// Alerts is alerts.yaml, the Prometheus rule file.
//
//go:embed alerts.yaml
var Alerts []byte
