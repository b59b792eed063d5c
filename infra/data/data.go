// Package data runs Redis and Postgres inside the cluster for the kind
// target: a StatefulSet with a volume each, a Service and probes, on the
// node that no worker drain touches (infra/placement). Redis is one server,
// or a Redis Cluster (cluster.go). The AWS target replaces it with
// ElastiCache and RDS; both hand the chat server the same two URLs.
package data

import (
	"fmt"
	"maps"
	"net/url"
	"slices"

	appsv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/apps/v1"
	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/switchboard-dev/switchboard/infra/naming"
	"github.com/switchboard-dev/switchboard/infra/placement"
	"github.com/switchboard-dev/switchboard/infra/rediscluster"
)

// Database and user of the chat server in the in-cluster Postgres.
const database = "switchboard"

// Ports of the stores' pods and Services.
const (
	RedisPort    = 6379
	PostgresPort = 5432
)

// DefaultRedisImage is the Redis image when the stack sets none; it has
// redis-cli (the e2e's NetworkPolicy probe runs it).
const DefaultRedisImage = "redis:7.2-alpine"

// Args configure the in-cluster stores.
type Args struct {
	Namespace       pulumi.StringInput
	Redis, Postgres bool               // which stores to run
	RedisImage      string             // default DefaultRedisImage
	PostgresImage   string             // default postgres:15-alpine
	StorageSize     string             // per volume, default 1Gi
	Password        pulumi.StringInput // Postgres's
	// RedisCluster, when set, makes Redis a Redis Cluster of that shape
	// (at least MinShards shards) rather than one server.
	RedisCluster *rediscluster.Shape
}

// Data is the stores' component; its URLs are secrets, set for the stores
// it runs.
type Data struct {
	pulumi.ResourceState
	RedisURL    pulumi.StringOutput
	DatabaseURL pulumi.StringOutput
	// RedisReady is what a client of Redis waits for: the Job that creates
	// the Redis Cluster; nil for one server, which is ready when it runs.
	RedisReady pulumi.Resource
}

// store is what differs between Redis, a Redis Cluster's nodes and
// Postgres.
type store struct {
	component, image, mount string
	port, uid               int
	command                 []string // empty: the image's entrypoint
	args                    []string
	env                     corev1.EnvVarArray
	ready                   []string // exec probe
	// replicas are its pods (0: one); peerPorts are ports its pods also
	// serve each other on, and its pods start together, for they find each
	// other (a Redis Cluster's bus).
	replicas  int
	peerPorts map[string]int
}

// New declares the stores args asks for: Redis, Postgres or both.
func New(ctx *pulumi.Context, name string, args Args, opts ...pulumi.ResourceOption) (*Data, error) {
	if !args.Redis && !args.Postgres {
		return nil, fmt.Errorf("data %s: want Redis, Postgres or both", name)
	}
	args = withDefaults(args)
	d := &Data{}
	if err := ctx.RegisterComponentResource("switchboard:index:Data", name, d, opts...); err != nil {
		return nil, err
	}
	host := func(component string, port int) pulumi.StringOutput {
		return pulumi.Sprintf("%s.%s.svc.cluster.local:%d", component, args.Namespace, port)
	}
	outputs := pulumi.Map{}
	if args.Redis && args.RedisCluster != nil {
		if err := redisCluster(ctx, name, args, d); err != nil {
			return nil, err
		}
		outputs["redisUrl"] = d.RedisURL
	}
	if args.Redis && args.RedisCluster == nil {
		redis := store{
			component: naming.Redis, image: args.RedisImage, mount: redisDir, port: RedisPort, uid: redisUID,
			args: redisArgs(redisDir), ready: []string{"redis-cli", "ping"},
		}
		if _, err := declare(ctx, name, args, redis, d); err != nil {
			return nil, err
		}
		d.RedisURL = pulumi.Sprintf("redis://%s/0", host(naming.Redis, RedisPort))
		outputs["redisUrl"] = d.RedisURL
	}
	if args.Postgres {
		secret, err := corev1.NewSecret(ctx, name+"-postgres", &corev1.SecretArgs{
			Metadata:   &metav1.ObjectMetaArgs{Name: pulumi.String(naming.Postgres), Namespace: args.Namespace, Labels: naming.Labels(naming.Postgres)},
			StringData: pulumi.StringMap{"POSTGRES_PASSWORD": pulumi.ToSecret(args.Password).(pulumi.StringOutput)},
		}, pulumi.Parent(d))
		if err != nil {
			return nil, fmt.Errorf("data %s: postgres secret: %w", name, err)
		}
		postgres := store{
			component: naming.Postgres, image: args.PostgresImage, mount: "/var/lib/postgresql/data", port: PostgresPort, uid: 70,
			env: corev1.EnvVarArray{
				corev1.EnvVarArgs{Name: pulumi.String("POSTGRES_USER"), Value: pulumi.String(database)},
				corev1.EnvVarArgs{Name: pulumi.String("POSTGRES_DB"), Value: pulumi.String(database)},
				corev1.EnvVarArgs{Name: pulumi.String("PGDATA"), Value: pulumi.String("/var/lib/postgresql/data/pgdata")},
				corev1.EnvVarArgs{Name: pulumi.String("POSTGRES_PASSWORD"), ValueFrom: &corev1.EnvVarSourceArgs{
					SecretKeyRef: &corev1.SecretKeySelectorArgs{Name: secret.Metadata.Name().Elem(), Key: pulumi.String("POSTGRES_PASSWORD")},
				}},
			},
			ready: []string{"pg_isready", "-U", database, "-d", database},
		}
		if _, err := declare(ctx, name, args, postgres, d); err != nil {
			return nil, err
		}
		d.DatabaseURL = pulumi.All(args.Password, host(naming.Postgres, PostgresPort)).ApplyT(func(v []any) string {
			u := url.URL{Scheme: "postgres", User: url.UserPassword(database, v[0].(string)), Host: v[1].(string), Path: "/" + database, RawQuery: "sslmode=disable"}
			return u.String()
		}).(pulumi.StringOutput)
		d.DatabaseURL = pulumi.ToSecret(d.DatabaseURL).(pulumi.StringOutput)
		outputs["databaseUrl"] = d.DatabaseURL
	}
	return d, ctx.RegisterResourceOutputs(d, outputs)
}

// Where the Redis pods keep their data, and the user they run as (the
// images' redis user).
const (
	redisDir = "/data"
	redisUID = 999
)

// redisArgs are every Redis server's: persistence in dir, and noeviction:
// a full Redis refuses writes rather than drop keys. Every room key has a
// TTL, so a volatile-* policy would evict a room's seq state key by key,
// and an allkeys-* one the persist stream too (issue 25). Redis's default,
// stated so that no image or config changes it.
func redisArgs(dir string) []string {
	return []string{"--appendonly", "yes", "--dir", dir, "--maxmemory-policy", "noeviction"}
}

func withDefaults(a Args) Args {
	if a.RedisImage == "" {
		a.RedisImage = DefaultRedisImage
	}
	if a.PostgresImage == "" {
		a.PostgresImage = "postgres:15-alpine"
	}
	if a.StorageSize == "" {
		a.StorageSize = "1Gi"
	}
	return a
}

// declare writes one store's headless Service and StatefulSet, one pod
// unless s.replicas says more.
func declare(ctx *pulumi.Context, name string, args Args, s store, parent pulumi.Resource) (*appsv1.StatefulSet, error) {
	meta := &metav1.ObjectMetaArgs{Name: pulumi.String(s.component), Namespace: args.Namespace, Labels: naming.Labels(s.component)}
	port := pulumi.Int(s.port)
	svcPorts := corev1.ServicePortArray{corev1.ServicePortArgs{Name: pulumi.String(s.component), Port: port, TargetPort: port}}
	podPorts := corev1.ContainerPortArray{corev1.ContainerPortArgs{Name: pulumi.String(s.component), ContainerPort: port}}
	for _, n := range slices.Sorted(maps.Keys(s.peerPorts)) {
		p := pulumi.Int(s.peerPorts[n])
		svcPorts = append(svcPorts, corev1.ServicePortArgs{Name: pulumi.String(n), Port: p, TargetPort: p})
		podPorts = append(podPorts, corev1.ContainerPortArgs{Name: pulumi.String(n), ContainerPort: p})
	}
	spec := &corev1.ServiceSpecArgs{
		ClusterIP: pulumi.String("None"),
		Selector:  naming.Selector(s.component),
		Ports:     svcPorts,
	}
	replicas, policy := 1, pulumi.StringPtrInput(nil)
	if s.replicas > 0 {
		replicas = s.replicas
	}
	if len(s.peerPorts) > 0 {
		// Peers resolve each other's names before they are ready, and
		// start together rather than one after another's readiness.
		spec.PublishNotReadyAddresses = pulumi.Bool(true)
		policy = pulumi.String("Parallel")
	}
	svc, err := corev1.NewService(ctx, name+"-"+s.component, &corev1.ServiceArgs{Metadata: meta, Spec: spec}, pulumi.Parent(parent))
	if err != nil {
		return nil, fmt.Errorf("data %s: %s service: %w", name, s.component, err)
	}
	var command pulumi.StringArrayInput
	if len(s.command) > 0 {
		command = pulumi.ToStringArray(s.command)
	}
	onIngressNode, tolerations := placement.OnIngressNode()
	set, err := appsv1.NewStatefulSet(ctx, name+"-"+s.component, &appsv1.StatefulSetArgs{
		Metadata: meta,
		Spec: &appsv1.StatefulSetSpecArgs{
			ServiceName:         svc.Metadata.Name().Elem(),
			Replicas:            pulumi.Int(replicas),
			PodManagementPolicy: policy,
			Selector:            &metav1.LabelSelectorArgs{MatchLabels: naming.Selector(s.component)},
			Template: &corev1.PodTemplateSpecArgs{
				Metadata: &metav1.ObjectMetaArgs{Labels: naming.Labels(s.component)},
				Spec: &corev1.PodSpecArgs{
					NodeSelector: onIngressNode,
					Tolerations:  tolerations,
					SecurityContext: &corev1.PodSecurityContextArgs{
						RunAsNonRoot: pulumi.Bool(true), RunAsUser: pulumi.Int(s.uid), RunAsGroup: pulumi.Int(s.uid), FsGroup: pulumi.Int(s.uid),
						SeccompProfile: &corev1.SeccompProfileArgs{Type: pulumi.String("RuntimeDefault")},
					},
					Containers: corev1.ContainerArray{corev1.ContainerArgs{
						Name:    pulumi.String(s.component),
						Image:   pulumi.String(s.image),
						Command: command,
						Args:    pulumi.ToStringArray(s.args),
						Env:     s.env,
						Ports:   podPorts,
						ReadinessProbe: &corev1.ProbeArgs{
							Exec:          &corev1.ExecActionArgs{Command: pulumi.ToStringArray(s.ready)},
							PeriodSeconds: pulumi.Int(5), TimeoutSeconds: pulumi.Int(3),
						},
						LivenessProbe: &corev1.ProbeArgs{
							TcpSocket:     &corev1.TCPSocketActionArgs{Port: port},
							PeriodSeconds: pulumi.Int(10), FailureThreshold: pulumi.Int(6),
						},
						Resources: &corev1.ResourceRequirementsArgs{
							Requests: pulumi.StringMap{"cpu": pulumi.String("100m"), "memory": pulumi.String("128Mi")},
							Limits:   pulumi.StringMap{"memory": pulumi.String("512Mi")},
						},
						SecurityContext: &corev1.SecurityContextArgs{
							AllowPrivilegeEscalation: pulumi.Bool(false),
							Capabilities:             &corev1.CapabilitiesArgs{Drop: pulumi.StringArray{pulumi.String("ALL")}},
						},
						VolumeMounts: corev1.VolumeMountArray{corev1.VolumeMountArgs{Name: pulumi.String("data"), MountPath: pulumi.String(s.mount)}},
					}},
				},
			},
			VolumeClaimTemplates: corev1.PersistentVolumeClaimTypeArray{corev1.PersistentVolumeClaimTypeArgs{
				Metadata: &metav1.ObjectMetaArgs{Name: pulumi.String("data")},
				Spec: &corev1.PersistentVolumeClaimSpecArgs{
					AccessModes: pulumi.StringArray{pulumi.String("ReadWriteOnce")},
					Resources:   &corev1.VolumeResourceRequirementsArgs{Requests: pulumi.StringMap{"storage": pulumi.String(args.StorageSize)}},
				},
			}},
		},
	}, pulumi.Parent(parent))
	if err != nil {
		return nil, fmt.Errorf("data %s: %s statefulset: %w", name, s.component, err)
	}
	return set, nil
}
