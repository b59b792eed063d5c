// Package edge is the load balancer in front of the chat pods. On kind it
// is NGINX with ip_hash, configured from the same nginx/ template as the
// local target, re-resolving the chat pods' headless Service as they scale,
// and exposed on a node port that the kind cluster maps to the host.
package edge

import (
	"crypto/sha256"
	"fmt"

	appsv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/apps/v1"
	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/switchboard-dev/switchboard/infra/naming"
	"github.com/switchboard-dev/switchboard/infra/placement"
	"github.com/switchboard-dev/switchboard/nginx"
)

// NginxPort is where NGINX listens in its pod (unprivileged: above 1024).
const NginxPort = 8080

// The edge pods run on the node that receives the host's traffic. kind
// maps a host port to one node only (infra/kind/cluster.yaml: the
// control-plane node's extraPortMappings), and a NodePort Service with
// externalTrafficPolicy Local forwards only to endpoints on the node the
// traffic arrived at, dropping it where there are none (Kubernetes docs,
// "Virtual IPs and Service Proxies": External traffic policy). Local keeps
// the client's address for ip_hash; Cluster would SNAT it to a node's
// address. So, as kind's Ingress guide does, the mapped node carries the
// label ingress-ready=true, the pods select it, and they tolerate the
// control-plane taint that kind keeps in a cluster with workers
// (placement.OnIngressNode).

// clusterDNS re-resolves the headless Service; NGINX resolves this name
// itself once, at start.
const clusterDNS = "kube-dns.kube-system.svc.cluster.local"

// NginxArgs configure the kind edge.
type NginxArgs struct {
	Namespace pulumi.StringInput
	// Upstream is the chat pods' headless Service as host:port.
	Upstream pulumi.StringInput
	Image    string // NGINX 1.27.3 or newer, unprivileged
	Replicas int
	NodePort int
}

// Nginx is the kind edge's component.
type Nginx struct {
	pulumi.ResourceState
	Config pulumi.StringOutput // the rendered nginx.conf
}

// NewNginx declares NGINX.
func NewNginx(ctx *pulumi.Context, name string, args NginxArgs, opts ...pulumi.ResourceOption) (*Nginx, error) {
	e := &Nginx{}
	if err := ctx.RegisterComponentResource("switchboard:index:Nginx", name, e, opts...); err != nil {
		return nil, err
	}
	e.Config = args.Upstream.ToStringOutput().ApplyT(func(upstream string) (string, error) {
		conf, err := nginx.Render(nginx.Config{
			Listen: fmt.Sprint(NginxPort), Servers: []string{upstream}, Resolver: clusterDNS,
			Runtime: "/tmp", Foreground: true,
		})
		return string(conf), err
	}).(pulumi.StringOutput)
	meta := &metav1.ObjectMetaArgs{Name: pulumi.String(naming.Edge), Namespace: args.Namespace, Labels: naming.Labels(naming.Edge)}
	cm, err := corev1.NewConfigMap(ctx, name, &corev1.ConfigMapArgs{
		Metadata: meta,
		Data:     pulumi.StringMap{"nginx.conf": e.Config},
	}, pulumi.Parent(e))
	if err != nil {
		return nil, fmt.Errorf("edge %s: configmap: %w", name, err)
	}
	// A changed config rolls the pods: NGINX reads it only at start.
	checksum := e.Config.ApplyT(func(c string) string { return fmt.Sprintf("%x", sha256.Sum256([]byte(c))) }).(pulumi.StringOutput)
	probe := &corev1.ProbeArgs{
		HttpGet:       &corev1.HTTPGetActionArgs{Path: pulumi.String("/nginx-health"), Port: pulumi.Int(NginxPort)},
		PeriodSeconds: pulumi.Int(5),
	}
	mount := func(vol, path, sub string) corev1.VolumeMountArgs {
		m := corev1.VolumeMountArgs{Name: pulumi.String(vol), MountPath: pulumi.String(path)}
		if sub != "" {
			m.SubPath = pulumi.String(sub)
			m.ReadOnly = pulumi.Bool(true)
		}
		return m
	}
	onIngressNode, tolerations := placement.OnIngressNode()
	if _, err := appsv1.NewDeployment(ctx, name, &appsv1.DeploymentArgs{
		Metadata: meta,
		Spec: &appsv1.DeploymentSpecArgs{
			Replicas: pulumi.Int(args.Replicas),
			Selector: &metav1.LabelSelectorArgs{MatchLabels: naming.Selector(naming.Edge)},
			Template: &corev1.PodTemplateSpecArgs{
				Metadata: &metav1.ObjectMetaArgs{
					Labels:      naming.Labels(naming.Edge),
					Annotations: pulumi.StringMap{"switchboard.dev/config-sha256": checksum},
				},
				Spec: &corev1.PodSpecArgs{
					NodeSelector: onIngressNode,
					Tolerations:  tolerations,
					SecurityContext: &corev1.PodSecurityContextArgs{
						RunAsNonRoot: pulumi.Bool(true), RunAsUser: pulumi.Int(101), RunAsGroup: pulumi.Int(101),
						SeccompProfile: &corev1.SeccompProfileArgs{Type: pulumi.String("RuntimeDefault")},
					},
					Containers: corev1.ContainerArray{corev1.ContainerArgs{
						Name:           pulumi.String("nginx"),
						Image:          pulumi.String(args.Image),
						Command:        pulumi.StringArray{pulumi.String("nginx"), pulumi.String("-c"), pulumi.String("/etc/switchboard/nginx.conf")},
						Ports:          corev1.ContainerPortArray{corev1.ContainerPortArgs{Name: pulumi.String("http"), ContainerPort: pulumi.Int(NginxPort)}},
						ReadinessProbe: probe,
						LivenessProbe:  probe,
						Resources: &corev1.ResourceRequirementsArgs{
							Requests: pulumi.StringMap{"cpu": pulumi.String("100m"), "memory": pulumi.String("64Mi")},
							Limits:   pulumi.StringMap{"memory": pulumi.String("256Mi")},
						},
						SecurityContext: &corev1.SecurityContextArgs{
							ReadOnlyRootFilesystem:   pulumi.Bool(true),
							AllowPrivilegeEscalation: pulumi.Bool(false),
							Capabilities:             &corev1.CapabilitiesArgs{Drop: pulumi.StringArray{pulumi.String("ALL")}},
						},
						VolumeMounts: corev1.VolumeMountArray{
							mount("config", "/etc/switchboard/nginx.conf", "nginx.conf"),
							mount("tmp", "/tmp", ""),
						},
					}},
					Volumes: corev1.VolumeArray{
						corev1.VolumeArgs{Name: pulumi.String("config"), ConfigMap: &corev1.ConfigMapVolumeSourceArgs{Name: cm.Metadata.Name()}},
						corev1.VolumeArgs{Name: pulumi.String("tmp"), EmptyDir: &corev1.EmptyDirVolumeSourceArgs{}},
					},
				},
			},
		},
	}, pulumi.Parent(e)); err != nil {
		return nil, fmt.Errorf("edge %s: deployment: %w", name, err)
	}
	if _, err := corev1.NewService(ctx, name, &corev1.ServiceArgs{
		Metadata: meta,
		Spec: &corev1.ServiceSpecArgs{
			Type:     pulumi.String("NodePort"),
			Selector: naming.Selector(naming.Edge),
			// Keep the client's address: ip_hash keys on it. On kind that
			// address is the Docker network's gateway for every client on
			// the host, so they all hash to one chat pod.
			ExternalTrafficPolicy: pulumi.String("Local"),
			Ports: corev1.ServicePortArray{corev1.ServicePortArgs{
				Name: pulumi.String("http"), Port: pulumi.Int(80), TargetPort: pulumi.String("http"), NodePort: pulumi.Int(args.NodePort),
			}},
		},
	}, pulumi.Parent(e)); err != nil {
		return nil, fmt.Errorf("edge %s: service: %w", name, err)
	}
	return e, ctx.RegisterResourceOutputs(e, pulumi.Map{"config": e.Config})
}
