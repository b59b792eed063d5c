// Package workload is the chat server on Kubernetes: its Deployment,
// Services, Secret, PodDisruptionBudget and HorizontalPodAutoscaler. Every
// target runs it; only the URLs of Redis and Postgres change.
package workload

import (
	"fmt"
	"strings"
	"time"

	appsv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/apps/v1"
	autoscalingv2 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/autoscaling/v2"
	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	policyv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/policy/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/switchboard-dev/switchboard/infra/naming"
)

// Port is the chat server's HTTP port in the pod, and the Services' port.
const Port = 8080

// Resources are the container's requests and limits.
type Resources struct {
	CPURequest, MemoryRequest, CPULimit, MemoryLimit string
}

// Args configure the chat server.
type Args struct {
	Namespace      pulumi.StringInput
	Image          string
	MinReplicas    int
	MaxReplicas    int
	Resources      Resources
	Drain          Drain
	PingInterval   time.Duration
	AllowedOrigins string
	// ConnectionsPerPod is the HPA's target of open WebSockets per pod.
	ConnectionsPerPod int
	// ScaleDownWindow is how long the HPA's recommendation must stay lower
	// before it scales in (the highest of the window wins).
	ScaleDownWindow time.Duration
	// ServiceAccount the pods run as (AWS: the one allowed to connect to
	// the database); nil: the namespace's default.
	ServiceAccount pulumi.StringPtrInput
	// Env are further plain variables (AWS: DATABASE_AUTH, AWS_REGION).
	Env map[string]string
	// TrustedProxies are the addresses the load balancer connects from
	// (TRUSTED_PROXIES): the server takes the client's address from the
	// X-Forwarded-For of these peers only.
	TrustedProxies []string
	// After are resources the pods wait for (AWS: the database role).
	After []pulumi.Resource
	// Secrets: they reach the pods only through a Kubernetes Secret.
	RedisURL    pulumi.StringInput
	DatabaseURL pulumi.StringInput
	JWTSecret   pulumi.StringInput

	// ImagePullSecrets name Secrets for pulling Image from a private registry.
	ImagePullSecrets []string
}

// Workload is the chat server's component.
type Workload struct {
	pulumi.ResourceState
	// Service is the ClusterIP Service; Headless lists every pod, ready or
	// not, for a proxy that resolves the pods itself (NGINX on kind).
	Service  pulumi.StringOutput
	Headless pulumi.StringOutput
}

// New declares the chat server.
func New(ctx *pulumi.Context, name string, args Args, opts ...pulumi.ResourceOption) (*Workload, error) {
	if args.MinReplicas < 1 || args.MaxReplicas < args.MinReplicas {
		return nil, fmt.Errorf("workload %s: replicas %d to %d: want 1 ≤ min ≤ max", name, args.MinReplicas, args.MaxReplicas)
	}
	if args.ConnectionsPerPod < 1 {
		return nil, fmt.Errorf("workload %s: %d connections per pod: want at least 1", name, args.ConnectionsPerPod)
	}
	if len(args.TrustedProxies) == 0 {
		// Behind a load balancer every client would count as its address.
		return nil, fmt.Errorf("workload %s: no trusted proxies: want the addresses the load balancer connects from", name)
	}
	w := &Workload{}
	if err := ctx.RegisterComponentResource("switchboard:index:Workload", name, w, opts...); err != nil {
		return nil, err
	}
	parent := pulumi.Parent(w)
	meta := func(n string) *metav1.ObjectMetaArgs {
		return &metav1.ObjectMetaArgs{Name: pulumi.String(n), Namespace: args.Namespace, Labels: naming.Labels(naming.Chat)}
	}

	env, err := corev1.NewSecret(ctx, name+"-env", &corev1.SecretArgs{
		Metadata: meta(naming.Chat + "-env"),
		Type:     pulumi.String("Opaque"),
		StringData: pulumi.StringMap{
			"JWT_SECRET":   pulumi.ToSecret(args.JWTSecret).(pulumi.StringOutput),
			"REDIS_URL":    pulumi.ToSecret(args.RedisURL).(pulumi.StringOutput),
			"DATABASE_URL": pulumi.ToSecret(args.DatabaseURL).(pulumi.StringOutput),
		},
	}, parent)
	if err != nil {
		return nil, fmt.Errorf("workload %s: secret: %w", name, err)
	}

	deploy, err := appsv1.NewDeployment(ctx, name, &appsv1.DeploymentArgs{
		Metadata: meta(naming.Chat),
		Spec: &appsv1.DeploymentSpecArgs{
			Replicas: pulumi.Int(args.MinReplicas),
			Selector: &metav1.LabelSelectorArgs{MatchLabels: naming.Selector(naming.Chat)},
			Strategy: &appsv1.DeploymentStrategyArgs{
				// One pod at a time: each drain moves its clients to the others.
				RollingUpdate: &appsv1.RollingUpdateDeploymentArgs{MaxSurge: pulumi.Int(1), MaxUnavailable: pulumi.Int(0)},
			},
			Template: &corev1.PodTemplateSpecArgs{
				Metadata: &metav1.ObjectMetaArgs{Labels: naming.Labels(naming.Chat)},
				Spec:     podSpec(args, env.Metadata.Name().Elem()),
			},
		},
	}, parent, pulumi.DependsOn(append([]pulumi.Resource{env}, args.After...)),
		// The autoscaler owns the replica count once the Deployment exists.
		pulumi.IgnoreChanges([]string{"spec.replicas"}))
	if err != nil {
		return nil, fmt.Errorf("workload %s: deployment: %w", name, err)
	}

	port := corev1.ServicePortArray{corev1.ServicePortArgs{
		Name: pulumi.String("http"), Port: pulumi.Int(Port), TargetPort: pulumi.String("http"),
	}}
	scraped := naming.Labels(naming.Chat)
	scraped[naming.ScrapeLabel] = pulumi.String("true")
	svc, err := corev1.NewService(ctx, name, &corev1.ServiceArgs{
		Metadata: &metav1.ObjectMetaArgs{Name: pulumi.String(naming.Chat), Namespace: args.Namespace, Labels: scraped},
		Spec:     &corev1.ServiceSpecArgs{Selector: naming.Selector(naming.Chat), Ports: port},
	}, parent)
	if err != nil {
		return nil, fmt.Errorf("workload %s: service: %w", name, err)
	}
	// The headless Service publishes every pod, ready or not: NGINX resolves
	// it every few seconds, and a list of ready pods only would leave it with
	// none for those seconds after an outage that made them all unready (the
	// dev stack answered 503 then). An unready pod refuses the handshake with
	// 503, which NGINX passes on to the next pod (nginx/nginx.conf.tmpl).
	headless, err := corev1.NewService(ctx, name+"-headless", &corev1.ServiceArgs{
		Metadata: meta(naming.Chat + "-headless"),
		Spec: &corev1.ServiceSpecArgs{
			ClusterIP: pulumi.String("None"), Selector: naming.Selector(naming.Chat), Ports: port,
			PublishNotReadyAddresses: pulumi.Bool(true),
		},
	}, parent)
	if err != nil {
		return nil, fmt.Errorf("workload %s: headless service: %w", name, err)
	}

	if _, err := policyv1.NewPodDisruptionBudget(ctx, name, &policyv1.PodDisruptionBudgetArgs{
		Metadata: meta(naming.Chat),
		Spec: &policyv1.PodDisruptionBudgetSpecArgs{
			// A node drain evicts one chat pod at a time.
			MaxUnavailable: pulumi.Int(1),
			Selector:       &metav1.LabelSelectorArgs{MatchLabels: naming.Selector(naming.Chat)},
		},
	}, parent); err != nil {
		return nil, fmt.Errorf("workload %s: disruption budget: %w", name, err)
	}

	if _, err := autoscalingv2.NewHorizontalPodAutoscaler(ctx, name, &autoscalingv2.HorizontalPodAutoscalerArgs{
		Metadata: meta(naming.Chat),
		Spec: &autoscalingv2.HorizontalPodAutoscalerSpecArgs{
			ScaleTargetRef: &autoscalingv2.CrossVersionObjectReferenceArgs{
				ApiVersion: pulumi.String("apps/v1"), Kind: pulumi.String("Deployment"), Name: deploy.Metadata.Name().Elem(),
			},
			MinReplicas: pulumi.Int(args.MinReplicas),
			MaxReplicas: pulumi.Int(args.MaxReplicas),
			Metrics:     metrics(args.ConnectionsPerPod),
			Behavior: &autoscalingv2.HorizontalPodAutoscalerBehaviorArgs{
				// Scaling in drains clients: do it slowly.
				ScaleDown: &autoscalingv2.HPAScalingRulesArgs{
					StabilizationWindowSeconds: pulumi.Int(int(args.ScaleDownWindow / time.Second)),
					Policies: autoscalingv2.HPAScalingPolicyArray{autoscalingv2.HPAScalingPolicyArgs{
						Type: pulumi.String("Pods"), Value: pulumi.Int(1), PeriodSeconds: pulumi.Int(60),
					}},
				},
			},
		},
	}, parent); err != nil {
		return nil, fmt.Errorf("workload %s: autoscaler: %w", name, err)
	}

	w.Service = svc.Metadata.Name().Elem()
	w.Headless = headless.Metadata.Name().Elem()
	return w, ctx.RegisterResourceOutputs(w, pulumi.Map{"service": w.Service, "headless": w.Headless})
}

func podSpec(args Args, envSecret pulumi.StringInput) *corev1.PodSpecArgs {
	probe := func(path string, period, failures int) *corev1.ProbeArgs {
		return &corev1.ProbeArgs{
			HttpGet:          &corev1.HTTPGetActionArgs{Path: pulumi.String(path), Port: pulumi.String("http")},
			PeriodSeconds:    pulumi.Int(period),
			TimeoutSeconds:   pulumi.Int(2),
			FailureThreshold: pulumi.Int(failures),
		}
	}
	plain := func(k, v string) corev1.EnvVarArgs {
		return corev1.EnvVarArgs{Name: pulumi.String(k), Value: pulumi.String(v)}
	}
	var pullSecrets corev1.LocalObjectReferenceArray
	for _, n := range args.ImagePullSecrets {
		pullSecrets = append(pullSecrets, corev1.LocalObjectReferenceArgs{Name: pulumi.String(n)})
	}
	return &corev1.PodSpecArgs{
		ImagePullSecrets:              pullSecrets,
		TerminationGracePeriodSeconds: pulumi.Int(seconds(args.Drain.Grace())),
		ServiceAccountName:            args.ServiceAccount,
		SecurityContext: &corev1.PodSecurityContextArgs{
			RunAsNonRoot:   pulumi.Bool(true),
			RunAsUser:      pulumi.Int(65532),
			RunAsGroup:     pulumi.Int(65532),
			SeccompProfile: &corev1.SeccompProfileArgs{Type: pulumi.String("RuntimeDefault")},
		},
		TopologySpreadConstraints: corev1.TopologySpreadConstraintArray{corev1.TopologySpreadConstraintArgs{
			MaxSkew:           pulumi.Int(1),
			TopologyKey:       pulumi.String("kubernetes.io/hostname"),
			WhenUnsatisfiable: pulumi.String("ScheduleAnyway"),
			LabelSelector:     &metav1.LabelSelectorArgs{MatchLabels: naming.Selector(naming.Chat)},
		}},
		Containers: corev1.ContainerArray{corev1.ContainerArgs{
			Name:  pulumi.String(naming.Chat),
			Image: pulumi.String(args.Image),
			Ports: corev1.ContainerPortArray{corev1.ContainerPortArgs{Name: pulumi.String("http"), ContainerPort: pulumi.Int(Port)}},
			Env: append(corev1.EnvVarArray{
				plain("LISTEN_ADDR", fmt.Sprintf(":%d", Port)),
				plain("DRAIN_DELAY", args.Drain.Delay.String()),
				plain("DRAIN_TIMEOUT", args.Drain.Timeout.String()),
				plain("PING_INTERVAL", args.PingInterval.String()),
				plain("ALLOWED_ORIGINS", args.AllowedOrigins),
				plain("LOG_LEVEL", "info"),
				plain("TRUSTED_PROXIES", strings.Join(args.TrustedProxies, ",")),
				corev1.EnvVarArgs{Name: pulumi.String("INSTANCE_ID"), ValueFrom: &corev1.EnvVarSourceArgs{
					FieldRef: &corev1.ObjectFieldSelectorArgs{FieldPath: pulumi.String("metadata.name")},
				}},
				// The Go GC works harder as the heap nears the memory limit,
				// instead of the pod being OOM-killed with garbage in it.
				corev1.EnvVarArgs{Name: pulumi.String("GOMEMLIMIT"), ValueFrom: &corev1.EnvVarSourceArgs{
					ResourceFieldRef: &corev1.ResourceFieldSelectorArgs{ContainerName: pulumi.String(naming.Chat), Resource: pulumi.String("limits.memory")},
				}},
			}, extraEnv(args.Env)...),
			EnvFrom: corev1.EnvFromSourceArray{corev1.EnvFromSourceArgs{
				SecretRef: &corev1.SecretEnvSourceArgs{Name: envSecret},
			}},
			LivenessProbe:  probe("/health", 10, 3),
			ReadinessProbe: probe("/ready", 2, 1),
			Lifecycle: &corev1.LifecycleArgs{PreStop: &corev1.LifecycleHandlerArgs{
				// The image has no shell: Kubernetes sleeps (PodLifecycleSleepAction).
				Sleep: &corev1.SleepActionArgs{Seconds: pulumi.Int(seconds(args.Drain.PreStop))},
			}},
			Resources: &corev1.ResourceRequirementsArgs{
				Requests: pulumi.StringMap{"cpu": pulumi.String(args.Resources.CPURequest), "memory": pulumi.String(args.Resources.MemoryRequest)},
				Limits:   pulumi.StringMap{"cpu": pulumi.String(args.Resources.CPULimit), "memory": pulumi.String(args.Resources.MemoryLimit)},
			},
			SecurityContext: &corev1.SecurityContextArgs{
				ReadOnlyRootFilesystem:   pulumi.Bool(true),
				AllowPrivilegeEscalation: pulumi.Bool(false),
				Capabilities:             &corev1.CapabilitiesArgs{Drop: pulumi.StringArray{pulumi.String("ALL")}},
			},
		}},
	}
}
