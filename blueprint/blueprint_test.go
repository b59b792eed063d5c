package blueprint_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/switchboard-dev/switchboard/blueprint"
	"github.com/switchboard-dev/switchboard/infra/eksaddon"
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
	"aws:eks/cluster:Cluster": {
		"endpoint": "https://mock.eks.amazonaws.com", "certificateAuthority": map[string]any{"data": "bW9jaw=="},
		"identities": []any{map[string]any{"oidcs": []any{map[string]any{"issuer": "https://oidc.eks.mock/id/ABC"}}}},
		"vpcConfig":  map[string]any{"clusterSecurityGroupId": "sg-cluster"},
	},
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
	case "aws:index/getAvailabilityZones:getAvailabilityZones":
		return resource.NewPropertyMapFromMap(map[string]any{"names": []any{"mock-1a", "mock-1b", "mock-1c"}}), nil
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

// outputs are a service's outputs, resolved.
type outputs struct {
	mu                                                          sync.Mutex
	endpoint, dashboards, kubeconfig, clusterName, loadBalancer string
}

// deploy runs NewService under mocks with args from build, and returns
// what was declared and the service's outputs.
func deploy(t *testing.T, build func(ctx *pulumi.Context) (blueprint.ServiceArgs, error)) (*mocks, *outputs, error) {
	t.Helper()
	m, out := &mocks{}, &outputs{}
	err := pulumi.RunErr(func(ctx *pulumi.Context) error {
		args, err := build(ctx)
		if err != nil {
			return err
		}
		svc, err := blueprint.NewService(ctx, "svc", args)
		if err != nil {
			return err
		}
		for _, o := range []struct {
			from pulumi.StringOutput
			into *string
		}{
			{svc.Endpoint, &out.endpoint}, {svc.DashboardsURL, &out.dashboards}, {svc.Kubeconfig, &out.kubeconfig},
			{svc.ClusterName, &out.clusterName}, {svc.LoadBalancer, &out.loadBalancer},
		} {
			o.from.ApplyT(func(v string) string { out.mu.Lock(); *o.into = v; out.mu.Unlock(); return v })
		}
		return nil
	}, pulumi.WithMocks("project", "test", m))
	return m, out, err
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
	m, out, err := deploy(t, func(ctx *pulumi.Context) (blueprint.ServiceArgs, error) {
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
	if out.kubeconfig != "" {
		t.Errorf("kubeconfig %q for a cluster it did not make", out.kubeconfig)
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
		// ELBv2: a load balancer's name must not begin with "internal-"
		// (https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateLoadBalancer.html).
		{"an AWS Name no load balancer may start with", func(ctx *pulumi.Context) (blueprint.ServiceArgs, error) {
			target, err := givenAWS(ctx)
			target.Name = "internal"
			return blueprint.ServiceArgs{Namespace: "ws", App: app(), Target: target}, err
		}, `aws: Name "internal"`},
		// ElastiCache and RDS: the first character must be a letter
		// (API_CreateReplicationGroup, API_CreateDBInstance).
		{"an AWS Name starting with a digit", func(ctx *pulumi.Context) (blueprint.ServiceArgs, error) {
			target, err := givenAWS(ctx)
			target.Name = "9lives"
			return blueprint.ServiceArgs{Namespace: "ws", App: app(), Target: target}, err
		}, `aws: Name "9lives"`},
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

// secretEnv are the names of the variables the server gets from Secrets.
func secretEnv(m *mocks) []string {
	var names []string
	for _, s := range m.of("core/v1:Secret") {
		data := s.Inputs["stringData"]
		if data.IsSecret() {
			data = data.SecretValue().Element
		}
		for k := range data.ObjectValue() {
			names = append(names, string(k))
		}
	}
	slices.Sort(names)
	return names
}

// named counts the resources of a type whose name starts with prefix.
func (m *mocks) named(kind, prefix string) int {
	n := 0
	for _, r := range m.of(kind) {
		if strings.HasPrefix(r.Name, prefix) {
			n++
		}
	}
	return n
}

// On AWS each store is optional: the service gets ElastiCache only with
// Redis, and RDS, the database role's bootstrap Job, its IRSA roles and the
// pods' way to STS only with Postgres; the alarms watch what exists, the
// NetworkPolicies open the ports of the stores it has, and the server gets
// the URLs of those alone.
func TestAWSCreatesOnlyTheStoresAskedFor(t *testing.T) {
	const (
		private = "10.9.64.0/18" // givenAWS's private subnets
		redis   = "ws pods -> " + private + " [TCP 6379]"
		pg      = "ws pods -> " + private + " [TCP 5432]"
		sts     = "ws pods -> 0.0.0.0/0 except 10.9.0.0/16, 169.254.0.0/16 [TCP 443]"
		boot    = "db-bootstrap pods -> " + private + " [TCP 5432]"
	)
	for _, tc := range []struct {
		name            string
		redis, postgres bool
	}{
		{"neither", false, false},
		{"Redis alone", true, false},
		{"Postgres alone", false, true},
		{"both", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var args blueprint.ServiceArgs
			m, out, err := deploy(t, func(ctx *pulumi.Context) (blueprint.ServiceArgs, error) {
				target, err := givenAWS(ctx)
				args = blueprint.ServiceArgs{Namespace: "ws", App: app(), Target: target}
				if tc.redis {
					args.Redis = &blueprint.Redis{URLEnv: "REDIS_URL"}
				}
				if tc.postgres {
					args.Postgres = &blueprint.Postgres{URLEnv: "DATABASE_URL"}
				}
				return args, err
			})
			if err != nil {
				t.Fatalf("program: %v", err)
			}
			one := func(b bool) int {
				if b {
					return 1
				}
				return 0
			}
			for _, c := range []struct {
				what      string
				kind, pfx string
				want      int
			}{
				{"ElastiCache replication groups", "elasticache/replicationGroup:ReplicationGroup", "", one(tc.redis)},
				{"Redis security groups", "ec2/securityGroup:SecurityGroup", "data-redis", one(tc.redis)},
				{"Redis auth secrets", "secretsmanager/secret:Secret", "data-redis", one(tc.redis)},
				{"RDS instances", "rds/instance:Instance", "", one(tc.postgres)},
				{"Postgres security groups", "ec2/securityGroup:SecurityGroup", "data-postgres", one(tc.postgres)},
				{"database bootstrap Jobs", "batch/v1:Job", "", one(tc.postgres)},
				{"database IRSA roles (the server's, the bootstrap's)", "iam/role:Role", "db-", 2 * one(tc.postgres)},
				{"Redis alarms (two nodes, three each)", "cloudwatch/metricAlarm:MetricAlarm", "alarms-redis-", 6 * one(tc.redis)},
				{"RDS alarms", "cloudwatch/metricAlarm:MetricAlarm", "alarms-db-", 3 * one(tc.postgres)},
				{"ALB alarms", "cloudwatch/metricAlarm:MetricAlarm", "alarms-alb-", 4},
				{"ALB Ingresses", "networking.k8s.io/v1:Ingress", "", 1},
			} {
				if got := m.named(c.kind, c.pfx); got != c.want {
					t.Errorf("%d %s, want %d", got, c.what, c.want)
				}
			}

			var want []string
			if tc.postgres {
				want = append(want, "DATABASE_URL")
			}
			if tc.redis {
				want = append(want, "REDIS_URL")
			}
			if got := secretEnv(m); !slices.Equal(got, want) {
				t.Errorf("the server's secret env %v, want %v", got, want)
			}

			flows, err := blueprint.Flows(args)
			if err != nil {
				t.Fatal(err)
			}
			var lines []string
			for _, f := range flows {
				lines = append(lines, fmt.Sprintf("%s -> %s %v", f.From, f.To, f.Ports))
			}
			for _, f := range []struct {
				flow string
				want bool
			}{{redis, tc.redis}, {pg, tc.postgres}, {sts, tc.postgres}, {boot, tc.postgres}} {
				if slices.Contains(lines, f.flow) != f.want {
					t.Errorf("flow %q allowed: %v, want %v; flows:\n%s", f.flow, !f.want, f.want, strings.Join(lines, "\n"))
				}
			}
			policies, _ := json.Marshal(inputsOf(m.of("networking.k8s.io/v1:NetworkPolicy")))
			for _, p := range []struct {
				port string
				want bool
			}{{"6379", tc.redis}, {"5432", tc.postgres}} {
				if strings.Contains(string(policies), `"port":`+p.port) != p.want {
					t.Errorf("a NetworkPolicy opens port %s: %v, want %v", p.port, !p.want, p.want)
				}
			}

			out.mu.Lock()
			defer out.mu.Unlock()
			if out.endpoint != "https://alb.mock" || out.loadBalancer != "alb.mock" || out.clusterName != "given" || out.kubeconfig != "" {
				t.Errorf("outputs endpoint %q, loadBalancer %q, clusterName %q, kubeconfig %q: want the ALB's, the given cluster's and none",
					out.endpoint, out.loadBalancer, out.clusterName, out.kubeconfig)
			}
		})
	}
}

// inputsOf are the resources' inputs, as plain values.
func inputsOf(rs []pulumi.MockResourceArgs) []any {
	var out []any
	for _, r := range rs {
		out = append(out, r.Inputs.Mappable())
	}
	return out
}

// AWS.Name prefixes the AWS names in place of "switchboard": a team's
// service gets its own load balancer, replication group, DB instance and
// tags, and Switchboard's stacks keep theirs by default.
func TestAWSNamesCarryTheNameGiven(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"", "switchboard-test"},
		{"acme-echo", "acme-echo-test"},
		// ELBv2 names are at most 32 characters (API_CreateLoadBalancer):
		// a long prefix is cut there and ends in a hash of the whole.
		{"acme-payments-websocket-gateway", "acme-payments-websocket-gateway-test"},
	} {
		m, _, err := deploy(t, func(ctx *pulumi.Context) (blueprint.ServiceArgs, error) {
			target, err := givenAWS(ctx)
			target.Name = tc.name
			return blueprint.ServiceArgs{
				Namespace: "ws", App: app(), Target: target,
				Redis: &blueprint.Redis{URLEnv: "REDIS_URL"}, Postgres: &blueprint.Postgres{URLEnv: "DATABASE_URL"},
			}, err
		})
		if err != nil {
			t.Fatalf("Name %q: %v", tc.name, err)
		}
		group := m.of("elasticache/replicationGroup:ReplicationGroup")[0].Inputs
		db := m.of("rds/instance:Instance")[0].Inputs
		ingress := m.of("networking.k8s.io/v1:Ingress")[0].Inputs["metadata"].ObjectValue()["annotations"].ObjectValue()
		alb := ingress["alb.ingress.kubernetes.io/load-balancer-name"].StringValue()
		if got := db["identifier"].StringValue(); got != tc.want {
			t.Errorf("Name %q: DB instance %q, want %q", tc.name, got, tc.want)
		}
		if got := db["tags"].ObjectValue()["project"].StringValue(); got != strings.TrimSuffix(tc.want, "-test") {
			t.Errorf("Name %q: tagged project %q", tc.name, got)
		}
		if len(tc.want) <= 32 {
			if alb != tc.want || group["replicationGroupId"].StringValue() != tc.want {
				t.Errorf("Name %q: ALB %q, replication group %q, want both %q", tc.name, alb, group["replicationGroupId"].StringValue(), tc.want)
			}
		} else if len(alb) != 32 || !strings.HasPrefix(alb, "acme-payments-websocket") || strings.HasPrefix(alb, tc.want) {
			t.Errorf("Name %q: ALB %q, want it cut to 32 characters, the prefix readable, a hash at the end", tc.name, alb)
		}
	}
}

// A service with neither store on a VPC and cluster the AWS target creates
// (the echo's shape): they and the ALB carry the Name given, and nothing
// of ElastiCache or RDS is made.
func TestAWSCreatesAClusterForAServiceWithoutStores(t *testing.T) {
	m, out, err := deploy(t, func(ctx *pulumi.Context) (blueprint.ServiceArgs, error) {
		addons, err := eksaddon.For("1.35")
		return blueprint.ServiceArgs{
			Namespace: "echo", App: app(),
			Target: blueprint.AWS{
				Name: "acme-echo", Region: "eu-west-1", VPCCIDR: "10.20.0.0/16",
				Cluster:           blueprint.EKS{Version: "1.35", NodeInstanceType: "t3.medium", NodeMin: 2, NodeMax: 4, Addons: addons, APIAllowedCIDRs: []string{"203.0.113.0/24"}},
				LBControllerChart: "1.13.4",
				CertificateARN:    "arn:aws:acm:eu-west-1:210987654321:certificate/given",
				AlarmTopicARN:     "arn:aws:sns:eu-west-1:210987654321:given",
				Stickiness:        time.Hour,
			},
		}, err
	})
	if err != nil {
		t.Fatalf("program: %v", err)
	}
	clusters := m.of("eks/cluster:Cluster")
	if len(clusters) != 1 || clusters[0].Inputs["name"].StringValue() != "acme-echo-test" {
		t.Errorf("EKS clusters %v, want one named acme-echo-test", inputsOf(clusters))
	}
	for _, v := range m.of("ec2/vpc:Vpc") {
		if p := v.Inputs["tags"].ObjectValue()["project"].StringValue(); p != "acme-echo" {
			t.Errorf("VPC tagged project %q, want acme-echo", p)
		}
	}
	for _, kind := range []string{"elasticache/", "rds/", "batch/v1:Job", "secretsmanager/secret:Secret"} {
		for _, r := range m.resources {
			if strings.Contains(r.TypeToken, kind) {
				t.Errorf("%s %s for a service without stores", r.TypeToken, r.Name)
			}
		}
	}
	out.mu.Lock()
	defer out.mu.Unlock()
	if out.kubeconfig == "" || out.endpoint != "https://alb.mock" {
		t.Errorf("kubeconfig %q, endpoint %q: want the created cluster's and the ALB's", out.kubeconfig, out.endpoint)
	}
}
