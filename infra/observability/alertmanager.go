package observability

import (
	"fmt"
	"time"

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
	root := UIReceiver
	if len(a.Receivers) == 0 {
		receivers = append(receivers, pulumi.Map{"name": pulumi.String(UIReceiver)})
	}
	for _, r := range a.Receivers {
		route := pulumi.Map{"receiver": pulumi.String(r.Name), "continue": pulumi.Bool(true)}
		if r.CriticalOnly {
			route["matchers"] = pulumi.StringArray{pulumi.String(`severity = "critical"`)}
		} else if root == UIReceiver {
			root = r.Name // never reached: its own route takes every alert
		}
		routes = append(routes, route)
		receivers = append(receivers, receiver(r))
	}
	return pulumi.Map{
		"route": pulumi.Map{
			"receiver":        pulumi.String(root),
			"group_by":        pulumi.StringArray{pulumi.String("namespace"), pulumi.String("alertname")},
			"group_wait":      pulumi.String(duration(a.GroupWait)),
			"group_interval":  pulumi.String(duration(a.GroupInterval)),
			"repeat_interval": pulumi.String(duration(a.RepeatInterval)),
			"routes":          routes,
		},
		"receivers": receivers,
	}
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

// alertmanagerValues are the chart's alertmanager values, and the Secret
// they mount if a receiver has a secret part.
func alertmanagerValues(ctx *pulumi.Context, name string, a Alerting, ns pulumi.StringPtrInput, parent pulumi.Resource) (pulumi.Map, []pulumi.Resource, error) {
	values := pulumi.Map{"config": alertmanagerConfig(a)}
	data := pulumi.StringMap{}
	for _, r := range a.Receivers {
		if r.HasSecret {
			data[r.Name] = pulumi.ToSecret(r.Secret).(pulumi.StringOutput)
		}
	}
	if len(data) == 0 {
		return values, nil, nil
	}
	secret, err := corev1.NewSecret(ctx, name+"-alert-receivers", &corev1.SecretArgs{
		Metadata:   &metav1.ObjectMetaArgs{Name: pulumi.String(ReceiversSecret), Namespace: ns},
		StringData: data,
	}, pulumi.Parent(parent))
	if err != nil {
		return nil, nil, fmt.Errorf("observability %s: alert receivers secret: %w", name, err)
	}
	values["alertmanagerSpec"] = pulumi.Map{"secrets": pulumi.StringArray{pulumi.String(ReceiversSecret)}}
	return values, []pulumi.Resource{secret}, nil
}
