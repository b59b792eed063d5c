package workload

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	autoscalingv2 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/autoscaling/v2"
	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Scaling is what the HPA scales on: a WebSocket server saturates on
// connections, so a per-pod gauge of them first (served by the custom
// metrics API, infra/autoscaling), CPU (message rates) second; the HPA
// takes the larger of the two replica counts. Memory is not one: the Go
// heap grows towards GOMEMLIMIT by design, which would hold the replicas
// at the maximum.
type Scaling struct {
	// Metric is the per-pod metric and PerPod its target average.
	Metric string
	PerPod int
	// CPUPercent is the CPU utilisation target, of the request.
	CPUPercent int
	// ScaleDownWindow is how long the HPA's recommendation must stay lower
	// before it scales in (the highest of the window wins).
	ScaleDownWindow time.Duration
}

func (s Scaling) check() error {
	if s.Metric == "" || s.PerPod < 1 {
		return fmt.Errorf("scaling on %q, %d per pod: want a metric and a target of at least 1", s.Metric, s.PerPod)
	}
	if s.CPUPercent < 1 {
		return fmt.Errorf("scaling on %d %% CPU: want a target of at least 1", s.CPUPercent)
	}
	return nil
}

func (s Scaling) metrics() autoscalingv2.MetricSpecArray {
	return autoscalingv2.MetricSpecArray{
		autoscalingv2.MetricSpecArgs{
			Type: pulumi.String("Pods"),
			Pods: &autoscalingv2.PodsMetricSourceArgs{
				Metric: &autoscalingv2.MetricIdentifierArgs{Name: pulumi.String(s.Metric)},
				Target: &autoscalingv2.MetricTargetArgs{Type: pulumi.String("AverageValue"), AverageValue: pulumi.String(strconv.Itoa(s.PerPod))},
			},
		},
		autoscalingv2.MetricSpecArgs{
			Type: pulumi.String("Resource"),
			Resource: &autoscalingv2.ResourceMetricSourceArgs{
				Name:   pulumi.String("cpu"),
				Target: &autoscalingv2.MetricTargetArgs{Type: pulumi.String("Utilization"), AverageUtilization: pulumi.Int(s.CPUPercent)},
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
