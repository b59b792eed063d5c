package workload

import (
	"maps"
	"slices"
	"strconv"

	autoscalingv2 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/autoscaling/v2"
	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// connectionsMetric is the chat server's gauge of open WebSockets, which
// prometheus-adapter serves per pod (infra/autoscaling).
const connectionsMetric = "websocket_connections_active"

// cpuTarget is the HPA's CPU utilisation target, of the request.
const cpuTarget = 70

// metrics the HPA scales on: a WebSocket server saturates on connections,
// so open connections per pod first, CPU (message rates) second; the HPA
// takes the larger of the two replica counts. Memory is not one: the Go
// heap grows towards GOMEMLIMIT by design, which would hold the replicas
// at the maximum.
func metrics(connectionsPerPod int) autoscalingv2.MetricSpecArray {
	return autoscalingv2.MetricSpecArray{
		autoscalingv2.MetricSpecArgs{
			Type: pulumi.String("Pods"),
			Pods: &autoscalingv2.PodsMetricSourceArgs{
				Metric: &autoscalingv2.MetricIdentifierArgs{Name: pulumi.String(connectionsMetric)},
				Target: &autoscalingv2.MetricTargetArgs{Type: pulumi.String("AverageValue"), AverageValue: pulumi.String(strconv.Itoa(connectionsPerPod))},
			},
		},
		autoscalingv2.MetricSpecArgs{
			Type: pulumi.String("Resource"),
			Resource: &autoscalingv2.ResourceMetricSourceArgs{
				Name:   pulumi.String("cpu"),
				Target: &autoscalingv2.MetricTargetArgs{Type: pulumi.String("Utilization"), AverageUtilization: pulumi.Int(cpuTarget)},
			},
		},
	}
}

// extraEnv are plain variables, in name order.
func extraEnv(env map[string]string) corev1.EnvVarArray {
	var out corev1.EnvVarArray
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, corev1.EnvVarArgs{Name: pulumi.String(k), Value: pulumi.String(env[k])})
	}
	return out
}
