package main

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"

	"github.com/switchboard-dev/switchboard/infra/awsname"
	"github.com/switchboard-dev/switchboard/infra/data"
)

// declaredNamed is the declared resource of kind whose metadata.name is
// name, for its URN.
func (s *stack) declaredNamed(t *testing.T, kind, name string) declared {
	t.Helper()
	for _, r := range s.of(kind) {
		if get(plain(resource.NewObjectProperty(r.Inputs)), "metadata.name") == name {
			return r
		}
	}
	t.Fatalf("no %s named %s", kind, name)
	return declared{}
}

// redisURL is the REDIS_URL the chat pods get.
func redisURL(t *testing.T, s *stack) string {
	url, _ := get(s.one(t, "core/v1:Secret", "chat-env"), "stringData.REDIS_URL").(string)
	return url
}

// Each Redis key is refused naming itself and the accepted form when its
// value cannot be deployed: an unknown mode, the cluster's shape without
// cluster mode, a shape past the target's limits (redis-cli --cluster
// create's 3 primaries and the kind node's room; ElastiCache's 500 nodes,
// 5 replicas per shard, and a replica per shard for Multi-AZ), and AWS's
// one-shard redisReplicas beside a cluster.
func TestRedisModeKeysAreRefusedOutsideTheirForm(t *testing.T) {
	for _, tc := range []struct {
		name   string
		config map[string]string
		key    string
		want   string
	}{
		{"unknown mode", kindConfig("redisMode", "sentinel"), "redisMode", "one of [standalone cluster]"},
		{"shards without cluster mode", kindConfig("redisShards", "3"), "redisShards", "redisMode: cluster"},
		{"replicas without cluster mode", awsConfig("redisReplicasPerShard", "2"), "redisReplicasPerShard", "redisMode: cluster"},
		{"kind: 2 shards", kindConfig("redisMode", "cluster", "redisShards", "2"), "redisShards", "an integer from 3 to 6"},
		{"kind: 7 shards", kindConfig("redisMode", "cluster", "redisShards", "7"), "redisShards", "an integer from 3 to 6"},
		{"kind: 3 replicas", kindConfig("redisMode", "cluster", "redisReplicasPerShard", "3"), "redisReplicasPerShard", "an integer from 0 to 2"},
		{"aws: no shard", awsConfig("redisMode", "cluster", "redisShards", "0"), "redisShards", "an integer from 1 to 500"},
		{"aws: 501 shards", awsConfig("redisMode", "cluster", "redisShards", "501"), "redisShards", "an integer from 1 to 500"},
		{"aws: 100 shards of 6 nodes", awsConfig("redisMode", "cluster", "redisShards", "100", "redisReplicasPerShard", "5"), "redisShards", "at most 500 nodes in all"},
		{"aws: no replica", awsConfig("redisMode", "cluster", "redisReplicasPerShard", "0"), "redisReplicasPerShard", "an integer from 1 to 5"},
		{"aws: 6 replicas", awsConfig("redisMode", "cluster", "redisReplicasPerShard", "6"), "redisReplicasPerShard", "an integer from 1 to 5"},
		{"aws: redisReplicas beside a cluster", awsConfig("redisMode", "cluster", "redisReplicas", "2"), "redisReplicas", "redisReplicasPerShard sizes each shard"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := run(tc.config)
			if err == nil || !strings.Contains(err.Error(), "switchboard:"+tc.key+" = ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v: want switchboard:%s refused with %q", err, tc.key, tc.want)
			}
		})
	}
	// Within the limits, both targets deploy.
	for _, c := range []map[string]string{
		kindConfig("redisMode", "cluster", "redisShards", "6", "redisReplicasPerShard", "2"),
		kindConfig("redisMode", "cluster", "redisReplicasPerShard", "0"),
		awsConfig("redisMode", "cluster", "redisShards", "83", "redisReplicasPerShard", "5"), // 498 nodes
		awsConfig("redisMode", "cluster", "redisShards", "1"),
	} {
		if _, err := run(c); err != nil {
			t.Errorf("%v: %v", c, err)
		}
	}
}

// On kind, redisMode cluster runs shards × (1 + replicas) Redis pods of one
// StatefulSet with cluster mode on, each announcing its stable name through
// the headless Service (which publishes the pods before they are ready, so
// that they find each other) and keeping nodes.conf on its volume; the
// creation Job, after the StatefulSet, gets every pod's name and the
// replicas per primary, and the chat pods, after the Job, get those names
// as seed nodes. Acks then wait for a replica, which the cluster's own
// failover promotes.
func TestKindRedisClusterIsAStatefulSetAndItsCreationJob(t *testing.T) {
	s := mustRun(t, kindConfig("redisMode", "cluster"))
	var names []string
	for i := range 6 {
		names = append(names, fmt.Sprintf("redis-%d.redis.switchboard.svc.cluster.local:6379", i))
	}

	set := s.one(t, "apps/v1:StatefulSet", "redis")
	if get(set, "spec.replicas") != float64(6) || get(set, "spec.serviceName") != "redis" || get(set, "spec.podManagementPolicy") != "Parallel" {
		t.Errorf("StatefulSet: replicas %v, service %v, policy %v: want 6 pods of the headless redis Service, started in parallel",
			get(set, "spec.replicas"), get(set, "spec.serviceName"), get(set, "spec.podManagementPolicy"))
	}
	node := get(set, "spec.template.spec.containers.0")
	args := fmt.Sprint(get(node, "args"))
	for _, want := range []string{
		"--cluster-enabled yes", "--cluster-announce-hostname $(POD_NAME).redis.$(POD_NAMESPACE).svc.cluster.local",
		"--cluster-preferred-endpoint-type hostname", "--maxmemory-policy noeviction", "--appendonly yes", "--dir /data",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("redis args %s: want %s", args, want)
		}
	}
	env := map[string]any{}
	for _, e := range get(node, "env").([]any) {
		env[get(e, "name").(string)] = fmt.Sprint(get(e, "value"), get(e, "valueFrom.fieldRef.fieldPath"))
	}
	if env["POD_NAME"] != "<nil>metadata.name" || env["POD_NAMESPACE"] != "<nil>metadata.namespace" || env["CLUSTER_CONFIG"] != "/data/nodes.conf<nil>" {
		t.Errorf("redis env %v: want POD_NAME and POD_NAMESPACE from the pod, nodes.conf on the volume", env)
	}
	if get(node, "volumeMounts.0.mountPath") != "/data" || get(set, "spec.volumeClaimTemplates.0.metadata.name") != "data" {
		t.Errorf("nodes.conf is not on a volume: mounts %v, claims %v", get(node, "volumeMounts"), get(set, "spec.volumeClaimTemplates"))
	}
	var ports []any
	for _, p := range get(node, "ports").([]any) {
		ports = append(ports, get(p, "containerPort"))
	}
	if !slices.Equal(ports, []any{float64(6379), float64(16379)}) {
		t.Errorf("redis ports %v: want 6379 and the cluster bus, 16379", ports)
	}
	svc := s.one(t, "core/v1:Service", "redis")
	if get(svc, "spec.clusterIP") != "None" || get(svc, "spec.publishNotReadyAddresses") != true {
		t.Errorf("redis Service: clusterIP %v, publishNotReadyAddresses %v: want headless, publishing pods before they are ready", get(svc, "spec.clusterIP"), get(svc, "spec.publishNotReadyAddresses"))
	}

	jobs := s.of("batch/v1:Job")
	if len(jobs) != 1 {
		t.Fatalf("%d Jobs, want the cluster's creation", len(jobs))
	}
	job := plain(resource.NewObjectProperty(jobs[0].Inputs))
	jobEnv := envOf(get(job, "spec.template.spec.containers.0"))
	if jobEnv["NODES"] != strings.Join(names, " ") || jobEnv["REPLICAS"] != "1" {
		t.Errorf("creation Job env %v: want NODES %q and REPLICAS 1", jobEnv, strings.Join(names, " "))
	}
	if labels, _ := get(job, "spec.template.metadata.labels").(map[string]any); labels["app.kubernetes.io/name"] != data.ClusterSetup {
		t.Errorf("creation Job pods labelled %v, want %s (the NetworkPolicies select it)", get(job, "spec.template.metadata.labels"), data.ClusterSetup)
	}
	if !s.reaches(jobs[0].URN, s.declaredNamed(t, "apps/v1:StatefulSet", "redis").URN) {
		t.Error("the creation Job does not wait for the StatefulSet")
	}
	if !s.reaches(s.declaredNamed(t, "apps/v1:Deployment", "chat").URN, jobs[0].URN) {
		t.Error("the chat Deployment does not wait for the cluster's creation")
	}

	if got, want := redisURL(t, s), "redis+cluster://"+strings.Join(names, ","); got != want {
		t.Errorf("REDIS_URL %s, want %s", got, want)
	}
	chatEnv := envOf(get(s.one(t, "apps/v1:Deployment", "chat"), "spec.template.spec.containers.0"))
	if chatEnv["REDIS_MIN_REPLICAS"] != "1" {
		t.Errorf("REDIS_MIN_REPLICAS %v with a replica per shard, want 1", chatEnv["REDIS_MIN_REPLICAS"])
	}
	s = mustRun(t, kindConfig("redisMode", "cluster", "redisShards", "4", "redisReplicasPerShard", "0"))
	if get(s.one(t, "apps/v1:StatefulSet", "redis"), "spec.replicas") != float64(4) || envOf(get(s.one(t, "apps/v1:Deployment", "chat"), "spec.template.spec.containers.0"))["REDIS_MIN_REPLICAS"] != nil {
		t.Error("4 shards without replicas: want 4 pods, and no replica for acks to wait for")
	}
}

// The kind cluster's flows: the chat pods reach every node on the client
// port only; the nodes reach each other on it (replication) and on the
// cluster bus, and DNS (their peers' names); the creation Job reaches the
// nodes' client port and DNS, nothing else.
func TestKindRedisClusterNetworkPolicies(t *testing.T) {
	s := mustRun(t, kindConfig("redisMode", "cluster"))
	pods := podTemplates(s)
	ep := func(name, ip string) endpoint {
		return endpoint{name: name, ns: "switchboard", labels: pods[name], ip: ip}
	}
	eps := map[string]endpoint{
		"chat": ep("chat", "10.244.1.5"), "edge": ep("edge", "10.244.0.5"),
		"redis": ep("redis", "10.244.0.6"), "postgres": ep("postgres", "10.244.0.7"),
		"create":     ep(data.ClusterSetup, "10.244.0.8"),
		"unlabelled": {ns: "switchboard", labels: map[string]string{"run": "probe"}, ip: "10.244.2.9"},
		"kube-dns":   {ns: "kube-system", labels: map[string]string{"k8s-app": "kube-dns"}, ip: "10.244.0.2"},
		"internet":   {ip: "203.0.113.9"},
	}
	checkFlows(t, s.all("networking.k8s.io/v1:NetworkPolicy"), eps, []flow{
		{"chat", "redis", 6379, "TCP", true},
		{"redis", "redis", 6379, "TCP", true},
		{"redis", "redis", 16379, "TCP", true},
		{"redis", "kube-dns", 53, "UDP", true},
		{"create", "redis", 6379, "TCP", true},
		{"create", "kube-dns", 53, "UDP", true},
		// Denied.
		{"chat", "redis", 16379, "TCP", false},
		{"create", "redis", 16379, "TCP", false},
		{"create", "postgres", 5432, "TCP", false},
		{"create", "chat", 8080, "TCP", false},
		{"create", "internet", 443, "TCP", false},
		{"redis", "postgres", 5432, "TCP", false},
		{"redis", "chat", 8080, "TCP", false},
		{"redis", "internet", 443, "TCP", false},
		{"edge", "redis", 6379, "TCP", false},
		{"unlabelled", "redis", 16379, "TCP", false},
		{"unlabelled", "redis", 6379, "TCP", false},
	})
}

// ElastiCache cluster mode (Amazon ElastiCache API Reference,
// CreateReplicationGroup,
// https://docs.aws.amazon.com/AmazonElastiCache/latest/APIReference/API_CreateReplicationGroup.html):
// shards are NumNodeGroups with ReplicasPerNodeGroup each (NumCacheClusters
// is the one-shard form's, and conflicts); AutomaticFailoverEnabled must be
// true in cluster mode, and MultiAZEnabled needs it. Cluster mode is a
// parameter group's cluster-enabled yes, in the family of the engine
// version (a group of another family is refused); TLS and the AUTH token
// as the one-shard form; the chat server starts at the configuration
// endpoint.
func TestElastiCacheClusterMode(t *testing.T) {
	s := mustRun(t, awsConfig("redisMode", "cluster", "redisShards", "4", "redisReplicasPerShard", "2"))
	r := s0(t, s, "elasticache/replicationGroup:ReplicationGroup")
	for k, want := range map[string]any{
		"numNodeGroups": float64(4), "replicasPerNodeGroup": float64(2), "clusterMode": "enabled",
		"automaticFailoverEnabled": true, "multiAzEnabled": true,
		"transitEncryptionEnabled": true, "atRestEncryptionEnabled": true, "authToken": testRedisToken, "port": float64(6379),
	} {
		if r[k] != want {
			t.Errorf("%s = %v, want %v", k, r[k], want)
		}
	}
	if r["numCacheClusters"] != nil {
		t.Errorf("numCacheClusters %v beside numNodeGroups: they conflict", r["numCacheClusters"])
	}
	pg := s0(t, s, "elasticache/parameterGroup:ParameterGroup")
	if want := cacheFamily(r["engine"].(string), r["engineVersion"].(string)); pg["family"] != want {
		t.Errorf("parameter group family %v, want %s", pg["family"], want)
	}
	params := map[string]any{}
	for _, p := range pg["parameters"].([]any) {
		params[get(p, "name").(string)] = get(p, "value")
	}
	if params["cluster-enabled"] != "yes" || params["maxmemory-policy"] != "noeviction" {
		t.Errorf("parameters %v: want cluster-enabled yes and noeviction", params)
	}
	want := "rediss+cluster://:" + testRedisToken + "@" + testConfigEndpoint + ":6379"
	if got := redisURL(t, s); got != want {
		t.Errorf("REDIS_URL %s, want %s", got, want)
	}
	// Standalone keeps one shard's form: a cluster-enabled group would be
	// refused by a replication group with cluster mode disabled.
	s = mustRun(t, awsConfig())
	for _, p := range s0(t, s, "elasticache/parameterGroup:ParameterGroup")["parameters"].([]any) {
		if get(p, "name") == "cluster-enabled" {
			t.Errorf("standalone's parameter group sets cluster-enabled %v", get(p, "value"))
		}
	}
	if r := s0(t, s, "elasticache/replicationGroup:ReplicationGroup"); r["numNodeGroups"] != nil || r["clusterMode"] != nil {
		t.Errorf("standalone: numNodeGroups %v, clusterMode %v: want neither", r["numNodeGroups"], r["clusterMode"])
	}
}

// In cluster mode ElastiCache names each shard's nodes
// <group id>-<node group 0001...>-<member 001...> (API NodeGroup,
// https://docs.aws.amazon.com/AmazonElastiCache/latest/APIReference/API_NodeGroup.html),
// and publishes their metrics per CacheClusterId: every node of every
// shard has its CPU, memory and eviction alarms, named by that id, which
// fits a cache cluster id (1 to 50 characters, CreateCacheCluster,
// https://docs.aws.amazon.com/AmazonElastiCache/latest/APIReference/API_CreateCacheCluster.html)
// for the longest group id and the most node groups.
func TestElastiCacheAlarmsNameEveryShardsNodes(t *testing.T) {
	s := mustRun(t, awsConfig("redisMode", "cluster", "redisShards", "3", "redisReplicasPerShard", "2"))
	group := s0(t, s, "elasticache/replicationGroup:ReplicationGroup")["replicationGroupId"].(string)
	byNode := map[string][]string{}
	for _, a := range s.all("cloudwatch/metricAlarm:MetricAlarm") {
		if a["namespace"] == "AWS/ElastiCache" {
			id := get(a, "dimensions.CacheClusterId").(string)
			byNode[id] = append(byNode[id], a["metricName"].(string))
		}
	}
	for shard := 1; shard <= 3; shard++ {
		for member := 1; member <= 3; member++ {
			id := fmt.Sprintf("%s-%04d-%03d", group, shard, member)
			got := byNode[id]
			slices.Sort(got)
			if !slices.Equal(got, []string{"DatabaseMemoryUsagePercentage", "EngineCPUUtilization", "Evictions"}) {
				t.Errorf("node %s: alarms on %v, want CPU, memory and evictions", id, got)
			}
			delete(byNode, id)
		}
	}
	if len(byNode) != 0 {
		t.Errorf("alarms on nodes the cluster does not have: %v", byNode)
	}
	longest := strings.Repeat("a", awsname.ReplicationGroup.Max) + fmt.Sprintf("-%04d-%03d", 500, 6)
	if !regexp.MustCompile(`^[a-z][a-z0-9-]{0,49}$`).MatchString(longest) {
		t.Errorf("a member id of the longest group id and the most node groups, %s (%d characters), is no cache cluster id", longest, len(longest))
	}
}
