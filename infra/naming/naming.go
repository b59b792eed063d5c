// Package naming is the one place that names Switchboard's Kubernetes
// objects and labels them, so that selectors, Services, the ServiceMonitor
// and the alert rules' job="switchboard" always agree.
package naming

import "github.com/pulumi/pulumi/sdk/v3/go/pulumi"

// Project is the part-of label of every object, and the Prometheus job of
// the chat instances (the alert rules select job="switchboard").
const Project = "switchboard"

// Components, each the name of its objects and its app.kubernetes.io/name.
const (
	Chat     = "chat"
	Edge     = "edge"
	Redis    = "redis"
	Postgres = "postgres"
)

// ScrapeLabel marks the one Service of the chat pods that Prometheus
// scrapes (the headless one selects the same pods).
const ScrapeLabel = "switchboard.dev/scrape"

// Selector picks a component's pods.
func Selector(component string) pulumi.StringMap {
	return pulumi.StringMap{
		"app.kubernetes.io/name":    pulumi.String(component),
		"app.kubernetes.io/part-of": pulumi.String(Project),
	}
}

// Labels are a component's labels on every object it owns.
func Labels(component string) pulumi.StringMap {
	l := Selector(component)
	l["app.kubernetes.io/managed-by"] = pulumi.String("pulumi")
	return l
}
