package main

import (
	"fmt"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/switchboard-dev/switchboard/blueprint"
	"github.com/switchboard-dev/switchboard/dashboards"
	"github.com/switchboard-dev/switchboard/infra/dbaccess"
	"github.com/switchboard-dev/switchboard/infra/naming"
	"github.com/switchboard-dev/switchboard/infra/observability"
	"github.com/switchboard-dev/switchboard/infra/stackconfig"
)

// chatServer is the chat server (app/) as a blueprint.Service, from the
// stack's configuration, on target.
func chatServer(cfg stackconfig.Config, target blueprint.Target) (blueprint.ServiceArgs, error) {
	// dashboards/alerts.yaml, the instance minimum the stack's minReplicas.
	rules, err := dashboards.RulesFor(cfg.Replicas)
	if err != nil {
		return blueprint.ServiceArgs{}, fmt.Errorf("chat server's alert rules: %w", err)
	}
	return blueprint.ServiceArgs{
		Namespace: cfg.Namespace,
		App: blueprint.App{
			Name: naming.Chat, Image: cfg.Image,
			Env:       chatEnv(cfg),
			SecretEnv: map[string]pulumi.StringInput{"JWT_SECRET": cfg.JWTSecret},
			Resources: blueprint.Resources{
				CPURequest: cfg.CPURequest, MemoryRequest: cfg.MemoryRequest, CPULimit: cfg.CPULimit, MemoryLimit: cfg.MemoryLimit,
			},
			MinReplicas: cfg.Replicas, MaxReplicas: cfg.MaxReplicas,
			Scaling:        blueprint.Scaling{PerPod: cfg.ConnectionsPerPod, ScaleDownWindow: cfg.ScaleDownWindow},
			Drain:          blueprint.Drain{PreStop: cfg.PreStop, Delay: cfg.DrainDelay, Timeout: cfg.DrainTimeout},
			PingInterval:   cfg.PingInterval,
			AllowedOrigins: cfg.AllowedOrigins,

			ImagePullSecrets: cfg.ImagePullSecrets,
		},
		Redis:    &blueprint.Redis{URLEnv: "REDIS_URL", Cluster: cfg.RedisCluster},
		Postgres: &blueprint.Postgres{URLEnv: "DATABASE_URL"},
		Observability: blueprint.Observability{
			Install: cfg.Observability == stackconfig.Install, ChartVersion: cfg.PrometheusStackVer,
			PrometheusNamespace: cfg.PrometheusNamespace, DatasourceUID: cfg.GrafanaDatasourceUID,
			Alerting: alerting(cfg),
			// The rules and the dashboard select job="switchboard", the
			// part-of label's value; the dashboard's file is switchboard.json.
			JobLabel: "app.kubernetes.io/part-of", Name: naming.Project, Rules: rules.Groups, Dashboard: dashboards.Dashboard,
		},
		Metrics: blueprint.Metrics{
			MetricsServer: cfg.MetricsServer, PrometheusAdapter: cfg.PrometheusAdapter,
			AdapterImage: cfg.AdapterImage, PrometheusURL: cfg.PrometheusURL,
		},
		Target: target,
	}, nil
}

// chatEnv are the chat server's own variables on the stack's target.
func chatEnv(cfg stackconfig.Config) map[string]string {
	if cfg.Target == stackconfig.AWS {
		return map[string]string{
			// RDS by IAM, with tokens signed for the region (infra/dbaccess).
			"DATABASE_AUTH": dbaccess.Auth, "AWS_REGION": cfg.AWS.Region,
			// An ack waits until a replica holds the message, so a Multi-AZ
			// failover to that replica keeps every acked message
			// (redisReplicas, or redisReplicasPerShard, is at least 1).
			"REDIS_MIN_REPLICAS": "1",
		}
	}
	env := map[string]string{}
	// The same on kind when the cluster's shards have replicas: the
	// cluster's own failover promotes one.
	if c := cfg.RedisCluster; c != nil && c.ReplicasPerShard > 0 {
		env["REDIS_MIN_REPLICAS"] = "1"
	}
	// The chat server accepts the development secret when a kind stack
	// uses it (stackconfig refuses it on every other target).
	if cfg.DevSecret {
		env["ALLOW_DEV_SECRET"] = "true"
	}
	return env
}

// alerting is the stack's alert routing.
func alerting(cfg stackconfig.Config) observability.Alerting {
	a := observability.Alerting{
		GroupWait: cfg.AlertTiming.GroupWait, GroupInterval: cfg.AlertTiming.GroupInterval, RepeatInterval: cfg.AlertTiming.RepeatInterval,
	}
	for _, r := range cfg.AlertReceivers {
		a.Receivers = append(a.Receivers, observability.Receiver{
			Name: r.Name, Type: r.Type, CriticalOnly: r.Severity == stackconfig.CriticalOnly,
			URL: r.URL, Channel: r.Channel, To: r.To, From: r.From, Smarthost: r.Smarthost, Username: r.Username,
			RequireTLS: r.RequireTLS == nil || *r.RequireTLS, Secret: r.Secret, HasSecret: r.SecretKey != "",
		})
	}
	return a
}
