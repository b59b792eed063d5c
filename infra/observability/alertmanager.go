package observability

import (
	"fmt"
	"time"

	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/apiextensions"
	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// ReceiversSecret holds the secret part of each alert receiver (key: the
// receiver's name) in install mode. The chart mounts it into Alertmanager
// (alertmanager.alertmanagerSpec.secrets, "mounted into
// /etc/alertmanager/secrets/" in kube-prometheus-stack 79.5.0's
// values.yaml) and the configuration names the files (url_file,
// api_url_file, routing_key_file, auth_password_file: Alertmanager v0.29.0,
// the chart's, config/notifiers.go), so that no secret is a Helm value.
const ReceiversSecret = "switchboard-alert-receivers"

// UIReceiver is the receiver of a stack without receivers (kind only):
// it notifies no one; Alertmanager's UI lists the alerts.
const UIReceiver = "alertmanager-ui"

// Receiver is where Alertmanager sends alerts (stackconfig.AlertReceiver).
type Receiver struct {
	Name, Type   string // webhook, slack, pagerduty, email
	CriticalOnly bool   // only alerts labelled severity=critical
	URL          string // webhook, when not secret
	Channel      string // slack
	To, From     string // email
	Smarthost    string
	Username     string
	RequireTLS   bool
	// Secret is the receiver's secret part (webhook URL, Slack webhook URL,
	// PagerDuty routing key, SMTP password), if it has one.
	Secret    pulumi.StringOutput
	HasSecret bool
}

// Alerting is the installed Alertmanager's routing.
type Alerting struct {
	Receivers                                []Receiver
	GroupWait, GroupInterval, RepeatInterval time.Duration
}

// alertmanagerConfig is kube-prometheus-stack's alertmanager.config:
// every alert to every receiver (critical-only ones: critical alerts),
// instead of the chart's route to the null receiver. The chart's Watchdog
// (always firing, a dead man's switch for an outside heartbeat) and
// InfoInhibitor (there to mute info alerts) stay on null. Helm merges the
// chart's global, inhibit_rules and templates in.
func alertmanagerConfig(a Alerting) pulumi.Map {
	null := pulumi.Map{"name": pulumi.String("null")}
	routes := pulumi.Array{
		pulumi.Map{"receiver": pulumi.String("null"), "matchers": pulumi.StringArray{pulumi.String(`alertname =~ "Watchdog|InfoInhibitor"`)}},
	}
	receivers := pulumi.Array{null}
	if len(a.Receivers) == 0 {
		receivers = append(receivers, pulumi.Map{"name": pulumi.String(UIReceiver)})
	}
	for _, r := range a.Receivers {
		route := pulumi.Map{"receiver": pulumi.String(r.Name), "continue": pulumi.Bool(true)}
		if r.CriticalOnly {
			route["matchers"] = pulumi.StringArray{pulumi.String(`severity = "critical"`)}
		}
		routes = append(routes, route)
		receivers = append(receivers, receiver(r))
	}
	return pulumi.Map{
		"route": pulumi.Map{
			"receiver":        pulumi.String(rootReceiver(a)),
			"group_by":        pulumi.StringArray{pulumi.String("namespace"), pulumi.String("alertname")},
			"group_wait":      pulumi.String(duration(a.GroupWait)),
			"group_interval":  pulumi.String(duration(a.GroupInterval)),
			"repeat_interval": pulumi.String(duration(a.RepeatInterval)),
			"routes":          routes,
		},
		"receivers": receivers,
	}
}

// rootReceiver is the receiver of the top route: the first that takes
// every severity (never reached: each receiver's own route, with continue,
// takes what it should), or UIReceiver when there is none.
func rootReceiver(a Alerting) string {
	for _, r := range a.Receivers {
		if !r.CriticalOnly {
			return r.Name
		}
	}
	return UIReceiver
}

// secretFile is where Alertmanager reads receiver name's secret.
func secretFile(name string) string {
	return "/etc/alertmanager/secrets/" + ReceiversSecret + "/" + name
}

func receiver(r Receiver) pulumi.Map {
	c := pulumi.Map{"send_resolved": pulumi.Bool(true)}
	var kind string
	switch r.Type {
	case "webhook":
		kind = "webhook_configs"
		if r.HasSecret {
			c["url_file"] = pulumi.String(secretFile(r.Name))
		} else {
			c["url"] = pulumi.String(r.URL)
		}
	case "slack":
		kind = "slack_configs"
		c["api_url_file"] = pulumi.String(secretFile(r.Name))
		if r.Channel != "" {
			c["channel"] = pulumi.String(r.Channel)
		}
	case "pagerduty":
		kind = "pagerduty_configs"
		c["routing_key_file"] = pulumi.String(secretFile(r.Name))
	case "email":
		kind = "email_configs"
		c["to"], c["from"], c["smarthost"] = pulumi.String(r.To), pulumi.String(r.From), pulumi.String(r.Smarthost)
		c["require_tls"] = pulumi.Bool(r.RequireTLS)
		if r.Username != "" {
			c["auth_username"] = pulumi.String(r.Username)
			c["auth_password_file"] = pulumi.String(secretFile(r.Name))
		}
	}
	return pulumi.Map{"name": pulumi.String(r.Name), kind: pulumi.Array{c}}
}

// duration is d in Alertmanager's syntax: 30s, 300s, 1500ms.
func duration(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", d/time.Millisecond)
}

// receiversSecret holds each receiver's secret part under its name in
// namespace ns, or is nil when none has one.
func receiversSecret(ctx *pulumi.Context, name string, a Alerting, ns pulumi.StringPtrInput, parent pulumi.Resource) (*corev1.Secret, error) {
	data := pulumi.StringMap{}
	for _, r := range a.Receivers {
		if r.HasSecret {
			data[r.Name] = pulumi.ToSecret(r.Secret).(pulumi.StringOutput)
		}
	}
	if len(data) == 0 {
		return nil, nil
	}
	secret, err := corev1.NewSecret(ctx, name+"-alert-receivers", &corev1.SecretArgs{
		Metadata:   &metav1.ObjectMetaArgs{Name: pulumi.String(ReceiversSecret), Namespace: ns},
		StringData: data,
	}, pulumi.Parent(parent))
	if err != nil {
		return nil, fmt.Errorf("observability %s: alert receivers secret: %w", name, err)
	}
	return secret, nil
}

// alertmanagerValues are the chart's alertmanager values, and the Secret
// they mount if a receiver has a secret part.
func alertmanagerValues(ctx *pulumi.Context, name string, a Alerting, ns pulumi.StringPtrInput, parent pulumi.Resource) (pulumi.Map, []pulumi.Resource, error) {
	values := pulumi.Map{"config": alertmanagerConfig(a)}
	secret, err := receiversSecret(ctx, name, a, ns, parent)
	if err != nil || secret == nil {
		return values, nil, err
	}
	values["alertmanagerSpec"] = pulumi.Map{"secrets": pulumi.StringArray{pulumi.String(ReceiversSecret)}}
	return values, []pulumi.Resource{secret}, nil
}

// clusterRoute routes the stack's alerts through the cluster's own
// Alertmanager (existing mode): an AlertmanagerConfig in the app namespace,
// which the Prometheus Operator merges into that Alertmanager's
// configuration under a route it restricts to alerts of the namespace
// (alertmanagerConfigMatcherStrategy OnNamespace, its default), its secret
// parts from a Secret beside it. The Alertmanager must select it
// (alertmanagerConfigSelector, alertmanagerConfigNamespaceSelector; see
// docs/alerting.md).
func clusterRoute(ctx *pulumi.Context, name string, a Alerting, meta *metav1.ObjectMetaArgs, parent pulumi.Resource, opts ...pulumi.ResourceOption) error {
	secret, err := receiversSecret(ctx, name, a, meta.Namespace, parent)
	if err != nil {
		return err
	}
	if secret != nil {
		opts = append(opts, pulumi.DependsOn([]pulumi.Resource{secret}))
	}
	var routes, receivers []any
	for _, r := range a.Receivers {
		route := map[string]any{"receiver": r.Name, "continue": true}
		if r.CriticalOnly {
			route["matchers"] = []any{map[string]any{"name": "severity", "value": "critical", "matchType": "="}}
		}
		routes = append(routes, route)
		receivers = append(receivers, clusterReceiver(r))
	}
	if _, err := apiextensions.NewCustomResource(ctx, name+"-alert-route", &apiextensions.CustomResourceArgs{
		ApiVersion: pulumi.String("monitoring.coreos.com/v1alpha1"),
		Kind:       pulumi.String("AlertmanagerConfig"),
		Metadata:   meta,
		OtherFields: kubernetes.UntypedArgs{"spec": map[string]any{
			"route": map[string]any{
				"receiver":       rootReceiver(a),
				"groupBy":        []any{"namespace", "alertname"},
				"groupWait":      duration(a.GroupWait),
				"groupInterval":  duration(a.GroupInterval),
				"repeatInterval": duration(a.RepeatInterval),
				"routes":         routes,
			},
			"receivers": receivers,
		}},
	}, append([]pulumi.ResourceOption{pulumi.Parent(parent)}, opts...)...); err != nil {
		return fmt.Errorf("observability %s: alertmanagerconfig: %w", name, err)
	}
	return nil
}

// clusterReceiver is receiver r in AlertmanagerConfig v1alpha1's form (the
// Prometheus Operator's API reference), its secret part a key of
// ReceiversSecret.
func clusterReceiver(r Receiver) map[string]any {
	secret := map[string]any{"name": ReceiversSecret, "key": r.Name}
	c := map[string]any{"sendResolved": true}
	var kind string
	switch r.Type {
	case "webhook":
		kind = "webhookConfigs"
		if r.HasSecret {
			c["urlSecret"] = secret
		} else {
			c["url"] = r.URL
		}
	case "slack":
		kind = "slackConfigs"
		c["apiURL"] = secret
		if r.Channel != "" {
			c["channel"] = r.Channel
		}
	case "pagerduty":
		kind = "pagerdutyConfigs"
		c["routingKey"] = secret
	case "email":
		kind = "emailConfigs"
		c["to"], c["from"], c["smarthost"], c["requireTLS"] = r.To, r.From, r.Smarthost, r.RequireTLS
		if r.Username != "" {
			c["authUsername"] = r.Username
			c["authPassword"] = secret
		}
	}
	return map[string]any{"name": r.Name, kind: []any{c}}
}
