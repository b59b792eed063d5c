// Package workload is a WebSocket server on Kubernetes: its Deployment,
// Services, Secret, PodDisruptionBudget and HorizontalPodAutoscaler. Every
// target runs it; only the env and the proxies' addresses change.
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

// Resources are the container's requests and limits.
type Resources struct {
	CPURequest, MemoryRequest, CPULimit, MemoryLimit string
}

// Args configure the server.
type Args struct {
	Namespace pulumi.StringInput
	// Name names the objects and is the pods' app.kubernetes.io/name
	// (naming.Selector), which the NetworkPolicies and monitoring select.
	Name  string
	Image string
	// Port is the server's HTTP port in the pod (clients, probes,
	// /metrics), and the Services' port.
	Port int
	// HealthPath answers the liveness probe, ReadyPath the readiness one.
	HealthPath, ReadyPath string
	MinReplicas           int
	MaxReplicas           int
	Resources             Resources
	Drain                 Drain
	PingInterval          time.Duration
	AllowedOrigins        string
	// Scaling is what the HPA scales on.
	Scaling Scaling
	// ServiceAccount the pods run as (AWS: the one allowed to connect to
	// the database); nil: the namespace's default.
	ServiceAccount pulumi.StringPtrInput
	// Env are the server's own plain variables, after the ones every
	// server gets (podSpec).
	Env map[string]string
	// TrustedProxies are the addresses the load balancer connects from
	// (TRUSTED_PROXIES): the server takes the client's address from the
	// X-Forwarded-For of these peers only.
	TrustedProxies []string
	// After are resources the pods wait for (AWS: the database role).
	After []pulumi.Resource
	// SecretEnv are variables that reach the pods only through a
	// Kubernetes Secret (tokens, the stores' URLs).
	SecretEnv map[string]pulumi.StringInput

	// ImagePullSecrets name Secrets for pulling Image from a private registry.
	ImagePullSecrets []string
}

// Workload is the server's component.
type Workload struct {
	pulumi.ResourceState
	// Service is the ClusterIP Service; Headless lists every pod, ready or
	// not, for a proxy that resolves the pods itself (NGINX on kind).
	Service  pulumi.StringOutput
	Headless pulumi.StringOutput
}

// New declares the server.
func New(ctx *pulumi.Context, name string, args Args, opts ...pulumi.ResourceOption) (*Workload, error) {
	if args.Name == "" || args.Port < 1 || args.HealthPath == "" || args.ReadyPath == "" {
		return nil, fmt.Errorf("workload %s: want a name, a port and the health and readiness paths", name)
	}
	if args.MinReplicas < 1 || args.MaxReplicas < args.MinReplicas {
		return nil, fmt.Errorf("workload %s: replicas %d to %d: want 1 ≤ min ≤ max", name, args.MinReplicas, args.MaxReplicas)
	}
	if err := args.Scaling.check(); err != nil {
		return nil, fmt.Errorf("workload %s: %w", name, err)
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
		return &metav1.ObjectMetaArgs{Name: pulumi.String(n), Namespace: args.Namespace, Labels: naming.Labels(args.Name)}
	}

	var envSecret pulumi.StringPtrInput
	after := args.After
	if len(args.SecretEnv) > 0 {
		data := pulumi.StringMap{}
		for k, v := range args.SecretEnv {
			data[k] = pulumi.ToSecret(v).(pulumi.StringOutput)
		}
		env, err := corev1.NewSecret(ctx, name+"-env", &corev1.SecretArgs{
			Metadata: meta(args.Name + "-env"), Type: pulumi.String("Opaque"), StringData: data,
		}, parent)
		if err != nil {
			return nil, fmt.Errorf("workload %s: secret: %w", name, err)
		}
		envSecret = env.Metadata.Name()
		after = append([]pulumi.Resource{env}, after...)
	}

	deploy, err := appsv1.NewDeployment(ctx, name, &appsv1.DeploymentArgs{
		Metadata: meta(args.Name),
		Spec: &appsv1.DeploymentSpecArgs{
			Replicas: pulumi.Int(args.MinReplicas),
			Selector: &metav1.LabelSelectorArgs{MatchLabels: naming.Selector(args.Name)},
			Strategy: &appsv1.DeploymentStrategyArgs{
				// One pod at a time: each drain moves its clients to the others.
				RollingUpdate: &appsv1.RollingUpdateDeploymentArgs{MaxSurge: pulumi.Int(1), MaxUnavailable: pulumi.Int(0)},
			},
			Template: &corev1.PodTemplateSpecArgs{
				Metadata: &metav1.ObjectMetaArgs{Labels: naming.Labels(args.Name)},
				Spec:     podSpec(args, envSecret),
			},
		},
	}, parent, pulumi.DependsOn(after),
		// The autoscaler owns the replica count once the Deployment exists.
		pulumi.IgnoreChanges([]string{"spec.replicas"}))
	if err != nil {
		return nil, fmt.Errorf("workload %s: deployment: %w", name, err)
	}

	port := corev1.ServicePortArray{corev1.ServicePortArgs{
		Name: pulumi.String("http"), Port: pulumi.Int(args.Port), TargetPort: pulumi.String("http"),
	}}
	scraped := naming.Labels(args.Name)
	scraped[naming.ScrapeLabel] = pulumi.String("true")
	svc, err := corev1.NewService(ctx, name, &corev1.ServiceArgs{
		Metadata: &metav1.ObjectMetaArgs{Name: pulumi.String(args.Name), Namespace: args.Namespace, Labels: scraped},
		Spec:     &corev1.ServiceSpecArgs{Selector: naming.Selector(args.Name), Ports: port},
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
		Metadata: meta(args.Name + "-headless"),
		Spec: &corev1.ServiceSpecArgs{
			ClusterIP: pulumi.String("None"), Selector: naming.Selector(args.Name), Ports: port,
			PublishNotReadyAddresses: pulumi.Bool(true),
		},
	}, parent)
	if err != nil {
		return nil, fmt.Errorf("workload %s: headless service: %w", name, err)
	}

	if _, err := policyv1.NewPodDisruptionBudget(ctx, name, &policyv1.PodDisruptionBudgetArgs{
		Metadata: meta(args.Name),
		Spec: &policyv1.PodDisruptionBudgetSpecArgs{
			// A node drain evicts one pod at a time.
			MaxUnavailable: pulumi.Int(1),
			Selector:       &metav1.LabelSelectorArgs{MatchLabels: naming.Selector(args.Name)},
		},
	}, parent); err != nil {
		return nil, fmt.Errorf("workload %s: disruption budget: %w", name, err)
	}

	if _, err := autoscalingv2.NewHorizontalPodAutoscaler(ctx, name, &autoscalingv2.HorizontalPodAutoscalerArgs{
		Metadata: meta(args.Name),
		Spec: &autoscalingv2.HorizontalPodAutoscalerSpecArgs{
			ScaleTargetRef: &autoscalingv2.CrossVersionObjectReferenceArgs{
				ApiVersion: pulumi.String("apps/v1"), Kind: pulumi.String("Deployment"), Name: deploy.Metadata.Name().Elem(),
			},
			MinReplicas: pulumi.Int(args.MinReplicas),
			MaxReplicas: pulumi.Int(args.MaxReplicas),
			Metrics:     args.Scaling.metrics(),
			Behavior: &autoscalingv2.HorizontalPodAutoscalerBehaviorArgs{
				// Scaling in drains clients: do it slowly.
				ScaleDown: &autoscalingv2.HPAScalingRulesArgs{
					StabilizationWindowSeconds: pulumi.Int(int(args.Scaling.ScaleDownWindow / time.Second)),
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

// podSpec runs the server. Every server gets the same variables first:
// where to listen, how to drain, the ping interval, the allowed origins,
// the trusted proxies, its pod's name and its memory limit; then its own.
func podSpec(args Args, envSecret pulumi.StringPtrInput) *corev1.PodSpecArgs {
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
			LabelSelector:     &metav1.LabelSelectorArgs{MatchLabels: naming.Selector(args.Name)},
		}},
		Containers: corev1.ContainerArray{corev1.ContainerArgs{
			Name:  pulumi.String(args.Name),
			Image: pulumi.String(args.Image),
			Ports: corev1.ContainerPortArray{corev1.ContainerPortArgs{Name: pulumi.String("http"), ContainerPort: pulumi.Int(args.Port)}},
			Env: append(corev1.EnvVarArray{
				plain("LISTEN_ADDR", fmt.Sprintf(":%d", args.Port)),
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
					ResourceFieldRef: &corev1.ResourceFieldSelectorArgs{ContainerName: pulumi.String(args.Name), Resource: pulumi.String("limits.memory")},
				}},
			}, extraEnv(args.Env)...),
			EnvFrom:        envFrom(envSecret),
			LivenessProbe:  probe(args.HealthPath, 10, 3),
			ReadinessProbe: probe(args.ReadyPath, 2, 1),
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

// envFrom takes every key of the Secret as a variable; nil without one.
func envFrom(secret pulumi.StringPtrInput) corev1.EnvFromSourceArray {
	if secret == nil {
		return nil
	}
	return corev1.EnvFromSourceArray{corev1.EnvFromSourceArgs{SecretRef: &corev1.SecretEnvSourceArgs{Name: secret}}}
}
