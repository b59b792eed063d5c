// Package observability wires a server into Prometheus and Grafana: a
// ServiceMonitor, its alert rules as a PrometheusRule, and its dashboard as
// a ConfigMap for Grafana's sidecar (the chat server's are in dashboards/).
// In install mode it also installs kube-prometheus-stack, its Alertmanager
// routed to the stack's receivers (alertmanager.go); in existing mode it
// relies on the Prometheus Operator, Alertmanager and Grafana that the
// cluster already runs.
package observability

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/apiextensions"
	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	helmv3 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/helm/v3"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	"github.com/pulumi/pulumi-random/sdk/v4/go/random"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/switchboard-dev/switchboard/dashboards/grafana"
	"github.com/switchboard-dev/switchboard/infra/naming"
)

// Namespace of kube-prometheus-stack in install mode.
const Namespace = "monitoring"

// GrafanaAdminSecret holds Grafana's admin user and generated password in
// install mode (keys admin-user, admin-password).
const GrafanaAdminSecret = "grafana-admin"

// releaseTimeout is how long `pulumi up` waits for kube-prometheus-stack
// to become ready. Helm's default, 5 minutes, is too short on a cold
// cluster, where the images of the operator, Prometheus, Alertmanager,
// Grafana, kube-state-metrics and node-exporter are all pulled first and the
// admission-webhook Jobs run before the operator starts.
const releaseTimeout = 15 * 60 // seconds

// DashboardLabel and DashboardLabelValue select the dashboard ConfigMap for
// Grafana's dashboard sidecar. They are kube-prometheus-stack's defaults
// (values.yaml: grafana.sidecar.dashboards.label and .labelValue), so an
// existing stack installed with default values loads the dashboard too; in
// install mode the release states them.
const (
	DashboardLabel      = "grafana_dashboard"
	DashboardLabelValue = "1"
)

// GrafanaNodePort exposes Grafana on kind's node (mapped to the host's 3000).
const GrafanaNodePort = 30300

// Args configure the observability component.
type Args struct {
	Namespace    pulumi.StringInput // the server's
	Install      bool               // install kube-prometheus-stack
	ChartVersion string             // kube-prometheus-stack, pinned
	// App is the server's component: the ServiceMonitor scrapes its
	// Service that carries naming.ScrapeLabel.
	App string
	// JobLabel is the label of that Service whose value is the Prometheus
	// job of the pods' series: app.kubernetes.io/name (the job is App) or
	// app.kubernetes.io/part-of (switchboard, the chat server's rules' job).
	JobLabel string
	// Name names the PrometheusRule, the dashboard's ConfigMap
	// (<Name>-dashboard) and its file (<Name>.json).
	Name string
	// Rules are the server's alert rules; none: no PrometheusRule.
	Rules []grafana.RuleGroup
	// Dashboard is the server's Grafana dashboard, its datasource written
	// ${DS_PROMETHEUS}; nil: no ConfigMap.
	Dashboard []byte
	// GrafanaService: ClusterIP (reach it by port-forward) or NodePort (kind).
	GrafanaService string
	// DatasourceUID is the uid of the Prometheus datasource the dashboard
	// queries: the sidecar fills in no __inputs, so the dashboard names it.
	// In install mode the chart's datasource gets this uid.
	DatasourceUID string
	// Alerting routes the stack's alerts (alertmanager.go): in install mode
	// the installed Alertmanager's whole configuration, in existing mode an
	// AlertmanagerConfig for the cluster's.
	Alerting Alerting
}

// Observability is the component.
type Observability struct {
	pulumi.ResourceState
}

// New declares the monitoring of the server.
func New(ctx *pulumi.Context, name string, args Args, opts ...pulumi.ResourceOption) (*Observability, error) {
	o := &Observability{}
	if err := ctx.RegisterComponentResource("switchboard:index:Observability", name, o, opts...); err != nil {
		return nil, err
	}
	children := []pulumi.ResourceOption{pulumi.Parent(o)}
	if args.Install {
		release, err := installStack(ctx, name, args, o)
		if err != nil {
			return nil, err
		}
		// The custom resources need the chart's CRDs.
		children = append(children, pulumi.DependsOn([]pulumi.Resource{release}))
	}
	meta := func(n string, extra pulumi.StringMap) *metav1.ObjectMetaArgs {
		labels := naming.Labels(args.App)
		for k, v := range extra {
			labels[k] = v
		}
		return &metav1.ObjectMetaArgs{Name: pulumi.String(n), Namespace: args.Namespace, Labels: labels}
	}

	if _, err := apiextensions.NewCustomResource(ctx, name+"-servicemonitor", &apiextensions.CustomResourceArgs{
		ApiVersion: pulumi.String("monitoring.coreos.com/v1"),
		Kind:       pulumi.String("ServiceMonitor"),
		Metadata:   meta(args.App, nil),
		OtherFields: kubernetes.UntypedArgs{"spec": map[string]any{
			"jobLabel": args.JobLabel,
			"selector": map[string]any{"matchLabels": map[string]any{naming.ScrapeLabel: "true"}},
			"endpoints": []any{map[string]any{
				"port": "http", "path": "/metrics", "interval": "15s",
			}},
		}},
	}, children...); err != nil {
		return nil, fmt.Errorf("observability %s: servicemonitor: %w", name, err)
	}

	if len(args.Rules) > 0 {
		groups, err := untyped(args.Rules)
		if err != nil {
			return nil, fmt.Errorf("observability %s: rules: %w", name, err)
		}
		if _, err := apiextensions.NewCustomResource(ctx, name+"-rules", &apiextensions.CustomResourceArgs{
			ApiVersion:  pulumi.String("monitoring.coreos.com/v1"),
			Kind:        pulumi.String("PrometheusRule"),
			Metadata:    meta(args.Name, nil),
			OtherFields: kubernetes.UntypedArgs{"spec": map[string]any{"groups": groups}},
		}, children...); err != nil {
			return nil, fmt.Errorf("observability %s: prometheusrule: %w", name, err)
		}
	}

	if !args.Install && len(args.Alerting.Receivers) > 0 {
		if err := clusterRoute(ctx, name, args.Alerting, meta(naming.Project, nil), o); err != nil {
			return nil, err
		}
	}

	if args.Dashboard != nil {
		dashboard := bytes.ReplaceAll(args.Dashboard, []byte("${DS_PROMETHEUS}"), []byte(args.DatasourceUID))
		if _, err := corev1.NewConfigMap(ctx, name+"-dashboard", &corev1.ConfigMapArgs{
			// The Grafana sidecar loads every ConfigMap with this label.
			Metadata: meta(args.Name+"-dashboard", pulumi.StringMap{DashboardLabel: pulumi.String(DashboardLabelValue)}),
			Data:     pulumi.StringMap{args.Name + ".json": pulumi.String(dashboard)},
		}, children...); err != nil {
			return nil, fmt.Errorf("observability %s: dashboard: %w", name, err)
		}
	}
	return o, ctx.RegisterResourceOutputs(o, pulumi.Map{})
}

func installStack(ctx *pulumi.Context, name string, args Args, parent pulumi.Resource) (*helmv3.Release, error) {
	ns, err := corev1.NewNamespace(ctx, name+"-monitoring", &corev1.NamespaceArgs{
		Metadata: &metav1.ObjectMetaArgs{Name: pulumi.String(Namespace)},
	}, pulumi.Parent(parent))
	if err != nil {
		return nil, fmt.Errorf("observability %s: namespace: %w", name, err)
	}
	// Grafana's admin password: the chart's default is the well-known
	// prom-operator. A RandomPassword is generated once and kept in the
	// stack's state, so every later `pulumi up` reuses it; the chart reads
	// it from a Secret, never from a value (kubectl -n monitoring get secret
	// grafana-admin shows it).
	pw, err := random.NewRandomPassword(ctx, name+"-grafana-admin", &random.RandomPasswordArgs{
		Length: pulumi.Int(32), Special: pulumi.Bool(false),
	}, pulumi.Parent(parent))
	if err != nil {
		return nil, fmt.Errorf("observability %s: grafana password: %w", name, err)
	}
	password := pulumi.ToSecret(pw.Result).(pulumi.StringOutput)
	admin, err := corev1.NewSecret(ctx, name+"-grafana-admin", &corev1.SecretArgs{
		Metadata:   &metav1.ObjectMetaArgs{Name: pulumi.String(GrafanaAdminSecret), Namespace: ns.Metadata.Name()},
		StringData: pulumi.StringMap{"admin-user": pulumi.String("admin"), "admin-password": password},
	}, pulumi.Parent(parent))
	if err != nil {
		return nil, fmt.Errorf("observability %s: grafana admin secret: %w", name, err)
	}
	alertmanager, amSecrets, err := alertmanagerValues(ctx, name, args.Alerting, ns.Metadata.Name(), parent)
	if err != nil {
		return nil, err
	}
	grafanaService := map[string]any{"type": args.GrafanaService}
	if args.GrafanaService == "NodePort" {
		grafanaService["nodePort"] = GrafanaNodePort
	}
	release, err := helmv3.NewRelease(ctx, name+"-stack", &helmv3.ReleaseArgs{
		Name:           pulumi.String("kube-prometheus-stack"),
		Chart:          pulumi.String("kube-prometheus-stack"),
		Version:        pulumi.String(args.ChartVersion),
		Namespace:      ns.Metadata.Name(),
		RepositoryOpts: &helmv3.RepositoryOptsArgs{Repo: pulumi.String("https://prometheus-community.github.io/helm-charts")},
		Values: pulumi.Map{
			"prometheus": pulumi.Map{"prometheusSpec": pulumi.Map{
				// Pick up ServiceMonitors and rules from every namespace,
				// not only those labelled with the release.
				"serviceMonitorSelectorNilUsesHelmValues": pulumi.Bool(false),
				"ruleSelectorNilUsesHelmValues":           pulumi.Bool(false),
			}},
			"alertmanager": alertmanager,
			"grafana": pulumi.Map{
				"admin": pulumi.Map{
					"existingSecret": pulumi.String(GrafanaAdminSecret),
					"userKey":        pulumi.String("admin-user"),
					"passwordKey":    pulumi.String("admin-password"),
				},
				"service": pulumi.ToMap(grafanaService),
				"sidecar": pulumi.Map{
					"dashboards": pulumi.Map{
						"enabled": pulumi.Bool(true), "searchNamespace": pulumi.String("ALL"),
						"label": pulumi.String(DashboardLabel), "labelValue": pulumi.String(DashboardLabelValue),
					},
					"datasources": pulumi.Map{"uid": pulumi.String(args.DatasourceUID)},
				},
			},
		},
		WaitForJobs: pulumi.Bool(true),
		Timeout:     pulumi.Int(releaseTimeout),
	}, pulumi.Parent(parent), pulumi.DependsOn(append([]pulumi.Resource{admin}, amSecrets...)))
	if err != nil {
		return nil, fmt.Errorf("observability %s: kube-prometheus-stack: %w", name, err)
	}
	return release, nil
}

// untyped turns typed values into the maps and slices a custom resource's
// untyped fields take.
func untyped(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	return out, json.Unmarshal(b, &out)
}
