package data

import (
	_ "embed"
	"fmt"
	"strconv"
	"strings"

	batchv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/batch/v1"
	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/switchboard-dev/switchboard/infra/naming"
	"github.com/switchboard-dev/switchboard/infra/placement"
	"github.com/switchboard-dev/switchboard/infra/rediscluster"
)

// The Redis Cluster's shape on kind. redis-cli --cluster create refuses
// fewer than 3 primaries ("Redis Cluster requires at least 3 master
// nodes"); every pod runs on the kind node, one machine, hence the upper
// bounds (at most 18 pods).
const (
	MinShards           = 3
	MaxShards           = 6
	MaxReplicasPerShard = 2
)

// ClusterBusPort is where the Redis Cluster's nodes gossip and fail over:
// the client port plus 10000 (Redis Cluster specification, "Cluster bus").
const ClusterBusPort = RedisPort + 10000

// ClusterSetup is the app.kubernetes.io/name of the Job that creates the
// Redis Cluster, which the NetworkPolicies select.
const ClusterSetup = "redis-cluster-create"

// nodeTimeout is how long a primary may be unreachable before its
// replica takes over (cluster-node-timeout; Redis's default is 15 s).
const nodeTimeout = 5 * 1000 // ms

var (
	//go:embed node.sh
	nodeScript string
	//go:embed create.sh
	createScript string
)

// clusterNodeArgs are a Redis Cluster node's redis-server arguments, after
// every Redis server's: it announces hostname, a name that stays when its
// address changes, and clients are redirected (MOVED, ASK) to such names.
// Protected mode is off, as the stores' images have it: the
// NetworkPolicies admit only the chat pods and the other nodes.
func clusterNodeArgs(dir, hostname string, port int) []string {
	return append(redisArgs(dir),
		"--port", strconv.Itoa(port),
		"--cluster-enabled", "yes",
		"--cluster-node-timeout", strconv.Itoa(nodeTimeout),
		"--cluster-announce-hostname", hostname,
		"--cluster-preferred-endpoint-type", "hostname",
		"--protected-mode", "no",
	)
}

// nodeNames are the cluster's pods' stable DNS names through the headless
// Service, with the client port.
func nodeNames(namespace string, shape rediscluster.Shape) []string {
	var out []string
	for i := range shape.Nodes() {
		out = append(out, fmt.Sprintf("%s-%d.%s.%s.svc.cluster.local:%d", naming.Redis, i, naming.Redis, namespace, RedisPort))
	}
	return out
}

// redisCluster declares the Redis Cluster: shape.Nodes() pods of one
// StatefulSet, each with its volume (nodes.conf keeps its identity across
// restarts), and the Job that joins them into a cluster once.
func redisCluster(ctx *pulumi.Context, name string, args Args, d *Data) error {
	shape := *args.RedisCluster
	if shape.Shards < MinShards || shape.Shards > MaxShards || shape.ReplicasPerShard < 0 || shape.ReplicasPerShard > MaxReplicasPerShard {
		return fmt.Errorf("data %s: a Redis Cluster of %d shards with %d replicas each: want %d to %d shards and 0 to %d replicas per shard",
			name, shape.Shards, shape.ReplicasPerShard, MinShards, MaxShards, MaxReplicasPerShard)
	}
	fieldEnv := func(name, path string) corev1.EnvVarArgs {
		return corev1.EnvVarArgs{Name: pulumi.String(name), ValueFrom: &corev1.EnvVarSourceArgs{FieldRef: &corev1.ObjectFieldSelectorArgs{FieldPath: pulumi.String(path)}}}
	}
	nodes := store{
		component: naming.Redis, image: args.RedisImage, mount: redisDir, port: RedisPort, uid: redisUID,
		command: []string{"sh", "-c", nodeScript, "redis-node"},
		// Kubernetes expands $(VAR) from the container's env.
		args: clusterNodeArgs(redisDir, fmt.Sprintf("$(POD_NAME).%s.$(POD_NAMESPACE).svc.cluster.local", naming.Redis), RedisPort),
		env: corev1.EnvVarArray{
			fieldEnv("POD_NAME", "metadata.name"), fieldEnv("POD_NAMESPACE", "metadata.namespace"),
			corev1.EnvVarArgs{Name: pulumi.String("CLUSTER_CONFIG"), Value: pulumi.String(redisDir + "/nodes.conf")},
		},
		ready:     []string{"redis-cli", "ping"},
		replicas:  shape.Nodes(),
		peerPorts: map[string]int{"cluster-bus": ClusterBusPort},
	}
	set, err := declare(ctx, name, args, nodes, d)
	if err != nil {
		return err
	}
	names := args.Namespace.ToStringOutput().ApplyT(func(ns string) []string { return nodeNames(ns, shape) })
	onIngressNode, tolerations := placement.OnIngressNode()
	job, err := batchv1.NewJob(ctx, name+"-"+ClusterSetup, &batchv1.JobArgs{
		// No name: a changed spec replaces the Job (its template is
		// immutable), and the new one runs, finding the cluster made.
		Metadata: &metav1.ObjectMetaArgs{Namespace: args.Namespace, Labels: naming.Labels(ClusterSetup)},
		Spec: &batchv1.JobSpecArgs{
			BackoffLimit:          pulumi.Int(6),
			ActiveDeadlineSeconds: pulumi.Int(900),
			Template: &corev1.PodTemplateSpecArgs{
				Metadata: &metav1.ObjectMetaArgs{Labels: naming.Labels(ClusterSetup)},
				Spec: &corev1.PodSpecArgs{
					RestartPolicy: pulumi.String("OnFailure"),
					NodeSelector:  onIngressNode,
					Tolerations:   tolerations,
					SecurityContext: &corev1.PodSecurityContextArgs{
						RunAsNonRoot: pulumi.Bool(true), RunAsUser: pulumi.Int(redisUID), RunAsGroup: pulumi.Int(redisUID),
						SeccompProfile: &corev1.SeccompProfileArgs{Type: pulumi.String("RuntimeDefault")},
					},
					Containers: corev1.ContainerArray{corev1.ContainerArgs{
						Name:    pulumi.String(ClusterSetup),
						Image:   pulumi.String(args.RedisImage),
						Command: pulumi.ToStringArray([]string{"sh", "-c", createScript}),
						Env: corev1.EnvVarArray{
							corev1.EnvVarArgs{Name: pulumi.String("NODES"), Value: names.ApplyT(func(n []string) string { return strings.Join(n, " ") }).(pulumi.StringOutput)},
							corev1.EnvVarArgs{Name: pulumi.String("REPLICAS"), Value: pulumi.String(strconv.Itoa(shape.ReplicasPerShard))},
						},
						Resources: &corev1.ResourceRequirementsArgs{
							Requests: pulumi.StringMap{"cpu": pulumi.String("10m"), "memory": pulumi.String("16Mi")},
							Limits:   pulumi.StringMap{"memory": pulumi.String("64Mi")},
						},
						SecurityContext: &corev1.SecurityContextArgs{
							AllowPrivilegeEscalation: pulumi.Bool(false), ReadOnlyRootFilesystem: pulumi.Bool(true),
							Capabilities: &corev1.CapabilitiesArgs{Drop: pulumi.StringArray{pulumi.String("ALL")}},
						},
					}},
				},
			},
		},
	}, pulumi.Parent(d), pulumi.DependsOn([]pulumi.Resource{set}))
	if err != nil {
		return fmt.Errorf("data %s: %s job: %w", name, ClusterSetup, err)
	}
	d.RedisReady = job
	d.RedisURL = names.ApplyT(func(n []string) string { return rediscluster.URL(false, "", n...) }).(pulumi.StringOutput)
	return nil
}
