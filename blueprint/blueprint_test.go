package blueprint_test

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/switchboard-dev/switchboard/blueprint"
)

// mocks record what a program declares and answer the AWS lookups the way
// AWS and the load balancer controller would.
type mocks struct {
	mu        sync.Mutex
	resources []pulumi.MockResourceArgs
}

const (
	albARN    = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/switchboard-test/50dc6c495c0c9188"
	givenOIDC = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/GIVEN"
)

func (m *mocks) NewResource(args pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	m.mu.Lock()
	m.resources = append(m.resources, args)
	m.mu.Unlock()
	outs := args.Inputs.Copy()
	if strings.HasSuffix(args.TypeToken, ":Ingress") {
		outs["status"] = resource.NewPropertyValue(map[string]any{"loadBalancer": map[string]any{"ingress": []any{map[string]any{"hostname": "alb.mock"}}}})
	}
	if strings.HasPrefix(args.TypeToken, "aws:") {
		outs["arn"] = resource.NewStringProperty("arn:aws:mock:::" + args.Name)
	}
	for k, v := range computed[args.TypeToken] {
		outs[resource.PropertyKey(k)] = resource.NewPropertyValue(v)
	}
	return args.Name + "-id", outs, nil
}

// computed are what AWS computes and the component reads back.
var computed = map[string]map[string]any{
	"aws:rds/instance:Instance": {
		"arn": "arn:aws:rds:eu-west-1:123456789012:db:given", "resourceId": "db-GIVEN", "address": "db.mock",
		"masterUserSecrets": []any{map[string]any{"secretArn": "arn:aws:secretsmanager:mock:db"}},
	},
	"aws:elasticache/replicationGroup:ReplicationGroup": {
		"primaryEndpointAddress": "redis.mock", "memberClusters": []any{"redis-001", "redis-002"},
		"configurationEndpointAddress": "clustercfg.mock",
	},
}

func (m *mocks) Call(args pulumi.MockCallArgs) (resource.PropertyMap, error) {
	switch args.Token {
	case "aws:lb/getLoadBalancer:getLoadBalancer":
		return resource.NewPropertyMapFromMap(map[string]any{"arn": albARN, "arnSuffix": "app/switchboard-test/50dc6c495c0c9188"}), nil
	case "aws:lb/getTargetGroup:getTargetGroup":
		return resource.NewPropertyMapFromMap(map[string]any{"arn": "tg", "arnSuffix": "targetgroup/tg/1", "loadBalancerArns": []any{albARN}}), nil
	case "aws:secretsmanager/getRandomPassword:getRandomPassword":
		return resource.NewPropertyMapFromMap(map[string]any{"randomPassword": "redis-token"}), nil
	}
	return args.Args, nil
}

// of are the resources whose type token ends in kind.
func (m *mocks) of(kind string) []pulumi.MockResourceArgs {
	var out []pulumi.MockResourceArgs
	for _, r := range m.resources {
		if strings.HasSuffix(r.TypeToken, kind) {
			out = append(out, r)
		}
	}
	return out
}

// deploy runs NewService under mocks with args from build, and returns
// what was declared and the service's kubeconfig output.
func deploy(t *testing.T, build func(ctx *pulumi.Context) (blueprint.ServiceArgs, error)) (*mocks, string, error) {
	t.Helper()
	m := &mocks{}
	var kubeconfig string
	err := pulumi.RunErr(func(ctx *pulumi.Context) error {
		args, err := build(ctx)
		if err != nil {
			return err
		}
		svc, err := blueprint.NewService(ctx, "svc", args)
		if err != nil {
			return err
		}
		svc.Kubeconfig.ApplyT(func(k string) string { kubeconfig = k; return k })
		return nil
	}, pulumi.WithMocks("project", "test", m))
	return m, kubeconfig, err
}

func app() blueprint.App {
	return blueprint.App{
		Name: "ws", Image: "example/ws:1", MinReplicas: 2, MaxReplicas: 4,
		Scaling: blueprint.Scaling{PerPod: 100, ScaleDownWindow: time.Minute},
		Drain:   blueprint.Drain{PreStop: time.Second, Delay: time.Second, Timeout: time.Second},
	}
}

// givenAWS is the AWS target on a VPC and an EKS cluster that exist.
func givenAWS(ctx *pulumi.Context) (blueprint.AWS, error) {
	provider, err := kubernetes.NewProvider(ctx, "given", &kubernetes.ProviderArgs{Kubeconfig: pulumi.String("given")})
	if err != nil {
		return blueprint.AWS{}, err
	}
	return blueprint.AWS{
		Region: "eu-west-1",
		ExistingVPC: &blueprint.ExistingVPC{
			ID: pulumi.String("vpc-given"), CIDR: "10.9.0.0/16",
			PublicSubnetIDs: pulumi.ToStringArray([]string{"subnet-pub"}), PrivateSubnetIDs: pulumi.ToStringArray([]string{"subnet-priv"}),
			PublicCIDRs: []string{"10.9.0.0/24"}, PrivateCIDRs: []string{"10.9.64.0/18"},
		},
		ExistingCluster: &blueprint.ExistingCluster{
			Name: pulumi.String("given"), SecurityGroup: pulumi.String("sg-given"),
			OIDCProviderARN: pulumi.String(givenOIDC), OIDCIssuer: pulumi.String("oidc.eks.eu-west-1.amazonaws.com/id/GIVEN"),
			Provider: provider,
		},
		LBControllerChart: "1.13.4",
		CertificateARN:    "arn:aws:acm:eu-west-1:210987654321:certificate/given",
		AlarmTopicARN:     "arn:aws:sns:eu-west-1:210987654321:given",
		Stickiness:        time.Hour,
		Stores:            blueprint.ManagedStores{RedisNodeType: "cache.t4g.small", RedisReplicas: 1, DBInstanceClass: "db.t4g.medium", DBStorageGB: 20, DBBackupDays: 1},
	}, nil
}

// On a VPC and a cluster it is given, the AWS target creates neither, nor
// a node autoscaler, nor a kubeconfig; its roles trust the given cluster's
// OIDC provider and the stores sit in the given private subnets.
func TestAWSOnAGivenVPCAndClusterCreatesNeither(t *testing.T) {
	m, kubeconfig, err := deploy(t, func(ctx *pulumi.Context) (blueprint.ServiceArgs, error) {
		target, err := givenAWS(ctx)
		return blueprint.ServiceArgs{
			Namespace: "ws", App: app(), Target: target,
			Redis: &blueprint.Redis{URLEnv: "REDIS_URL"}, Postgres: &blueprint.Postgres{URLEnv: "DATABASE_URL"},
		}, err
	})
	if err != nil {
		t.Fatalf("program: %v", err)
	}
	for _, kind := range []string{"ec2/vpc:Vpc", "eks/cluster:Cluster", "eks/nodeGroup:NodeGroup", "iam/openIdConnectProvider:OpenIdConnectProvider"} {
		if n := len(m.of(kind)); n != 0 {
			t.Errorf("%d %s: want the given one only", n, kind)
		}
	}
	for _, r := range m.of("helm.sh/v3:Release") {
		if strings.Contains(r.Name, "cluster-autoscaler") {
			t.Errorf("release %s on a cluster whose nodes its owner scales", r.Name)
		}
	}
	if kubeconfig != "" {
		t.Errorf("kubeconfig %q for a cluster it did not make", kubeconfig)
	}
	irsa := 0
	for _, r := range m.of("iam/role:Role") {
		policy, _ := r.Inputs["assumeRolePolicy"].Mappable().(string)
		if !strings.Contains(policy, "Federated") {
			continue
		}
		irsa++
		if !strings.Contains(policy, givenOIDC) {
			t.Errorf("role %s trusts %s, not the given OIDC provider", r.Name, policy)
		}
	}
	if irsa == 0 {
		t.Error("no IRSA role")
	}
	for _, g := range m.of("/subnetGroup:SubnetGroup") {
		if ids, _ := json.Marshal(g.Inputs["subnetIds"].Mappable()); string(ids) != `["subnet-priv"]` {
			t.Errorf("%s %s in subnets %s, want the given private one", g.TypeToken, g.Name, ids)
		}
	}
	if len(m.of("networking.k8s.io/v1:Ingress")) != 1 {
		t.Error("no ALB Ingress")
	}
}

// A kind service with Redis alone runs Redis, gets its URL in the variable
// it named, and no Postgres.
func TestKindRunsTheStoresAskedFor(t *testing.T) {
	m, _, err := deploy(t, func(*pulumi.Context) (blueprint.ServiceArgs, error) {
		return blueprint.ServiceArgs{
			Namespace: "ws", App: app(), Redis: &blueprint.Redis{URLEnv: "CACHE_URL"},
			Target: blueprint.Kind{KubeContext: "kind-test", Edge: blueprint.Nginx{Image: "nginx", Replicas: 1, NodePort: 30090}},
		}, nil
	})
	if err != nil {
		t.Fatalf("program: %v", err)
	}
	var sets []string
	for _, s := range m.of("apps/v1:StatefulSet") {
		sets = append(sets, s.Name)
	}
	if strings.Join(sets, ",") != "data-redis" {
		t.Errorf("StatefulSets %v, want Redis alone", sets)
	}
	secrets := m.of("core/v1:Secret")
	if len(secrets) != 1 {
		t.Fatalf("%d Secrets, want the server's env", len(secrets))
	}
	data := secrets[0].Inputs["stringData"]
	if data.IsSecret() {
		data = data.SecretValue().Element
	}
	if env := data.ObjectValue(); env["CACHE_URL"].IsNull() || len(env) != 1 {
		t.Errorf("the server's secret env %v, want CACHE_URL alone", env.Mappable())
	}
}

// Arguments that cannot make a service are refused before anything is
// declared, saying what is missing.
func TestRefusesWhatCannotBeDeployed(t *testing.T) {
	for _, tc := range []struct {
		name string
		args func(ctx *pulumi.Context) (blueprint.ServiceArgs, error)
		want string
	}{
		{"no target", func(*pulumi.Context) (blueprint.ServiceArgs, error) {
			return blueprint.ServiceArgs{Namespace: "ws", App: app()}, nil
		}, "no target"},
		{"a store without its variable", func(*pulumi.Context) (blueprint.ServiceArgs, error) {
			return blueprint.ServiceArgs{Namespace: "ws", App: app(), Redis: &blueprint.Redis{}, Target: blueprint.Kind{}}, nil
		}, "URLEnv"},
		{"AWS without stores", func(ctx *pulumi.Context) (blueprint.ServiceArgs, error) {
			target, err := givenAWS(ctx)
			return blueprint.ServiceArgs{Namespace: "ws", App: app(), Target: target}, err
		}, "want Redis and Postgres"},
		{"a kind Redis Cluster of 2 shards", func(*pulumi.Context) (blueprint.ServiceArgs, error) {
			return blueprint.ServiceArgs{
				Namespace: "ws", App: app(), Target: blueprint.Kind{},
				Redis: &blueprint.Redis{URLEnv: "REDIS_URL", Cluster: &blueprint.RedisCluster{Shards: 2}},
			}, nil
		}, "want 3 to 6 shards"},
		{"an ElastiCache cluster without replicas", func(ctx *pulumi.Context) (blueprint.ServiceArgs, error) {
			target, err := givenAWS(ctx)
			target.Stores.RedisReplicas = 0
			return blueprint.ServiceArgs{
				Namespace: "ws", App: app(), Target: target,
				Redis: &blueprint.Redis{URLEnv: "REDIS_URL", Cluster: &blueprint.RedisCluster{Shards: 2}}, Postgres: &blueprint.Postgres{URLEnv: "DATABASE_URL"},
			}, err
		}, "1 to 5 replicas per shard"},
		{"an ElastiCache cluster beside the one shard's replicas", func(ctx *pulumi.Context) (blueprint.ServiceArgs, error) {
			target, err := givenAWS(ctx)
			return blueprint.ServiceArgs{
				Namespace: "ws", App: app(), Target: target,
				Redis: &blueprint.Redis{URLEnv: "REDIS_URL", Cluster: &blueprint.RedisCluster{Shards: 2, ReplicasPerShard: 1}}, Postgres: &blueprint.Postgres{URLEnv: "DATABASE_URL"},
			}, err
		}, "RedisReplicas 0"},
		{"a given cluster without its VPC", func(ctx *pulumi.Context) (blueprint.ServiceArgs, error) {
			target, err := givenAWS(ctx)
			target.ExistingVPC = nil
			return blueprint.ServiceArgs{
				Namespace: "ws", App: app(), Target: target,
				Redis: &blueprint.Redis{URLEnv: "REDIS_URL"}, Postgres: &blueprint.Postgres{URLEnv: "DATABASE_URL"},
			}, err
		}, "ExistingVPC"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := deploy(t, tc.args)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}

// Redis.Cluster is a Redis Cluster on either target, its URL in the
// variable the service named: on kind six pods and their creation Job, on
// AWS a replication group in cluster mode, reached at its configuration
// endpoint.
func TestRedisClusterOnBothTargets(t *testing.T) {
	cluster := &blueprint.RedisCluster{Shards: 3, ReplicasPerShard: 1}
	urlOf := func(m *mocks) string {
		for _, s := range m.of("core/v1:Secret") {
			data := s.Inputs["stringData"]
			if data.IsSecret() {
				data = data.SecretValue().Element
			}
			if v, ok := data.ObjectValue()["CACHE_URL"]; ok {
				if v.IsSecret() {
					v = v.SecretValue().Element
				}
				return v.StringValue()
			}
		}
		return ""
	}
	m, _, err := deploy(t, func(*pulumi.Context) (blueprint.ServiceArgs, error) {
		return blueprint.ServiceArgs{
			Namespace: "ws", App: app(), Redis: &blueprint.Redis{URLEnv: "CACHE_URL", Cluster: cluster},
			Target: blueprint.Kind{KubeContext: "kind-test", Edge: blueprint.Nginx{Image: "nginx", Replicas: 1, NodePort: 30090}},
		}, nil
	})
	if err != nil {
		t.Fatalf("kind: %v", err)
	}
	sets := m.of("apps/v1:StatefulSet")
	if len(sets) != 1 || sets[0].Inputs["spec"].ObjectValue()["replicas"].NumberValue() != 6 || len(m.of("batch/v1:Job")) != 1 {
		t.Errorf("kind: %d StatefulSets and %d Jobs, want one of 6 pods and the creation Job", len(sets), len(m.of("batch/v1:Job")))
	}
	if url := urlOf(m); !strings.HasPrefix(url, "redis+cluster://redis-0.redis.ws.svc.cluster.local:6379,") || strings.Count(url, ",") != 5 {
		t.Errorf("kind: CACHE_URL %q, want the six nodes as seeds", url)
	}
	m, _, err = deploy(t, func(ctx *pulumi.Context) (blueprint.ServiceArgs, error) {
		target, err := givenAWS(ctx)
		target.Stores.RedisReplicas = 0
		return blueprint.ServiceArgs{
			Namespace: "ws", App: app(), Target: target,
			Redis: &blueprint.Redis{URLEnv: "CACHE_URL", Cluster: cluster}, Postgres: &blueprint.Postgres{URLEnv: "DATABASE_URL"},
		}, err
	})
	if err != nil {
		t.Fatalf("aws: %v", err)
	}
	groups := m.of("elasticache/replicationGroup:ReplicationGroup")
	if len(groups) != 1 || groups[0].Inputs["numNodeGroups"].NumberValue() != 3 || groups[0].Inputs["replicasPerNodeGroup"].NumberValue() != 1 {
		t.Errorf("aws: replication groups %v, want one of 3 node groups with a replica each", groups)
	}
	if url := urlOf(m); url != "rediss+cluster://:redis-token@clustercfg.mock:6379" {
		t.Errorf("aws: CACHE_URL %q, want the configuration endpoint over TLS with the token", url)
	}
}
