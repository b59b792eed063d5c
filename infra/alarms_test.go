package main

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"

	"github.com/switchboard-dev/switchboard/infra/alarms"
	"github.com/switchboard-dev/switchboard/infra/edge"
	"github.com/switchboard-dev/switchboard/infra/iampolicy"
)

// published is how AWS publishes each metric an alarm may watch: the
// dimension sets (CloudWatch matches a metric by its exact set of
// dimensions: an alarm naming a set the metric is not published with
// watches a metric that does not exist, and never fires), and whether it is
// reported every minute while its resource lives (then no data means the
// resource is gone) or only when it is not zero (then no data is zero).
var published = map[string]struct {
	sets   [][]string // each sorted
	always bool
	doc    string
}{
	// Elastic Load Balancing, "CloudWatch metrics for your Application
	// Load Balancer" (https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-cloudwatch-metrics.html):
	// each metric's Dimensions and Reporting criteria.
	"AWS/ApplicationELB/HTTPCode_ELB_5XX_Count": {
		sets: [][]string{{"LoadBalancer"}, {"AvailabilityZone", "LoadBalancer"}},
		doc:  "ALB metrics: reporting criteria: there is a nonzero value",
	},
	"AWS/ApplicationELB/HTTPCode_Target_5XX_Count": {
		sets: [][]string{{"LoadBalancer"}, {"AvailabilityZone", "LoadBalancer"}, {"LoadBalancer", "TargetGroup"}, {"AvailabilityZone", "LoadBalancer", "TargetGroup"}},
		doc:  "ALB metrics: reporting criteria: there is a nonzero value",
	},
	"AWS/ApplicationELB/UnHealthyHostCount": {
		sets:   [][]string{{"LoadBalancer", "TargetGroup"}, {"AvailabilityZone", "LoadBalancer", "TargetGroup"}},
		always: true,
		doc:    "ALB metrics: reporting criteria: reported if health checks are enabled",
	},
	"AWS/ApplicationELB/HealthyHostCount": {
		sets:   [][]string{{"LoadBalancer", "TargetGroup"}, {"AvailabilityZone", "LoadBalancer", "TargetGroup"}},
		always: true,
		doc:    "ALB metrics: reporting criteria: reported if health checks are enabled",
	},
	// Amazon ElastiCache, "Monitoring use with CloudWatch Metrics"
	// (https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/CacheMetrics.html):
	// host and engine metrics are collected per node every 60 seconds;
	// "Dimensions for ElastiCache metrics": CacheClusterId, and
	// CacheClusterId with CacheNodeId ("Metrics for Valkey and Redis OSS"
	// lists the engine metrics).
	"AWS/ElastiCache/EngineCPUUtilization":          {sets: [][]string{{"CacheClusterId"}, {"CacheClusterId", "CacheNodeId"}}, always: true, doc: "ElastiCache"},
	"AWS/ElastiCache/DatabaseMemoryUsagePercentage": {sets: [][]string{{"CacheClusterId"}, {"CacheClusterId", "CacheNodeId"}}, always: true, doc: "ElastiCache"},
	"AWS/ElastiCache/Evictions":                     {sets: [][]string{{"CacheClusterId"}, {"CacheClusterId", "CacheNodeId"}}, always: true, doc: "ElastiCache"},
	// Amazon RDS, "Amazon CloudWatch metrics for Amazon RDS"
	// (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/rds-metrics.html):
	// RDS sends each active instance's metrics every minute; "Amazon
	// CloudWatch dimensions for Amazon RDS": per DBInstanceIdentifier, or
	// aggregated by DatabaseClass or EngineName (DBClusterIdentifier is
	// Aurora's).
	"AWS/RDS/CPUUtilization":      {sets: rdsSets, always: true, doc: "RDS"},
	"AWS/RDS/FreeStorageSpace":    {sets: rdsSets, always: true, doc: "RDS"},
	"AWS/RDS/DatabaseConnections": {sets: rdsSets, always: true, doc: "RDS"},
}

var rdsSets = [][]string{{"DBInstanceIdentifier"}, {"DatabaseClass"}, {"EngineName"}}

// Every CloudWatch alarm the prod stack makes can fire: it names a
// dimension set its metric is published with, exactly, and values that are
// this stack's resources; and a resource that dies is not taken for a
// healthy one. A metric reported only when not zero treats no data as not
// breaching (else a quiet ALB pages); of the alarms on a resource whose
// metrics are reported every minute, at least one treats no data as
// breaching, so that its silence pages.
func TestEveryAlarmCanFire(t *testing.T) {
	for _, mode := range []string{"standalone", "cluster"} {
		t.Run(mode, func(t *testing.T) { everyAlarmCanFire(t, mode) })
	}
}

func everyAlarmCanFire(t *testing.T, redisMode string) {
	s := mustRun(t, awsConfig("redisMode", redisMode))
	db := s0(t, s, "rds/instance:Instance")["identifier"]
	// A member cache cluster: one the replication group lists, or in
	// cluster mode one of its shards' (TestElastiCacheAlarmsNameEveryShardsNodes).
	members := fmt.Sprint(computed["aws:elasticache/replicationGroup:ReplicationGroup"]["memberClusters"])
	member := func(v string) bool { return v != "" && strings.Contains(members, v) }
	if redisMode == "cluster" {
		group := s0(t, s, "elasticache/replicationGroup:ReplicationGroup")["replicationGroupId"].(string)
		member = regexp.MustCompile(`^` + regexp.QuoteMeta(group) + `-000[1-3]-00[12]$`).MatchString
	}
	mine := map[string]func(v string) bool{
		"LoadBalancer":         func(v string) bool { return v == testALBSuffix },
		"TargetGroup":          func(v string) bool { return v == testTargetGroupSfx },
		"DBInstanceIdentifier": func(v string) bool { return v == db },
		"CacheClusterId":       member,
	}
	type watched struct{ breaching, always bool }
	byResource := map[string]*watched{}
	all := s.all("cloudwatch/metricAlarm:MetricAlarm")
	if len(all) < 10 {
		t.Fatalf("%d alarms; the stack makes more", len(all))
	}
	for _, a := range all {
		metric := a["namespace"].(string) + "/" + a["metricName"].(string)
		dims, _ := a["dimensions"].(map[string]any)
		names := slices.Sorted(maps.Keys(dims))
		p, ok := published[metric]
		if !ok {
			t.Errorf("alarm on %s: no published dimension sets known: add its row, citing the AWS page", metric)
			continue
		}
		if !slices.ContainsFunc(p.sets, func(set []string) bool { return slices.Equal(set, names) }) {
			t.Errorf("alarm on %s names dimensions %v: it is published only with %v (%s): the alarm can never fire", metric, names, p.sets, p.doc)
		}
		for _, n := range names {
			if v, _ := dims[n].(string); mine[n] == nil || !mine[n](v) {
				t.Errorf("alarm on %s: %s = %q is not this stack's", metric, n, dims[n])
			}
		}
		missing := a["treatMissingData"]
		if !p.always && missing != alarms.NotBreaching {
			t.Errorf("alarm on %s treats missing data as %v: it is reported only when not zero, want %s", metric, missing, alarms.NotBreaching)
		}
		resource := a["namespace"].(string) + fmt.Sprint(dims)
		w := byResource[resource]
		if w == nil {
			w = &watched{}
			byResource[resource] = w
		}
		w.always = w.always || p.always
		w.breaching = w.breaching || (p.always && missing == alarms.Breaching)
	}
	for r, w := range byResource {
		if w.always && !w.breaching {
			t.Errorf("%s: no alarm treats missing data as breaching: when it dies, its alarms stay OK", r)
		}
	}
}

// The chat target group is found by the tags the controller puts on it (the
// cluster, the Ingress, its backend service and port), not by a name the
// controller hashes, and the alarms page when no pod is healthy.
func TestALBAlarmsFindTheControllersTargetGroup(t *testing.T) {
	s := mustRun(t, awsConfig())
	want := edge.TargetGroupTags("switchboard-prod", "switchboard", "chat", "chat", 8080)
	if want[iampolicy.ClusterTag] != "switchboard-prod" || want[edge.StackTag] != "switchboard/chat" || want[edge.ResourceTag] != "switchboard/chat-chat:8080" {
		t.Errorf("tags %v: not the controller's tracking tags", want)
	}
	lookups := 0
	for _, c := range s.calls {
		if c.Token != "aws:lb/getTargetGroup:getTargetGroup" {
			continue
		}
		lookups++
		got := map[string]string{}
		for k, v := range c.Args["tags"].ObjectValue() {
			got[string(k)] = v.StringValue()
		}
		if !maps.Equal(got, want) {
			t.Errorf("target group looked up by %v, want the controller's tags %v", got, want)
		}
		if _, ok := c.Args[resource.PropertyKey("name")]; ok {
			t.Error("target group looked up by name: the controller hashes it")
		}
	}
	if lookups != 1 {
		t.Errorf("%d target group lookups, want 1", lookups)
	}
	healthy := 0
	for _, a := range s.all("cloudwatch/metricAlarm:MetricAlarm") {
		if a["metricName"] == "HealthyHostCount" && a["comparisonOperator"] == "LessThanThreshold" && a["threshold"] == float64(1) {
			healthy++
		}
	}
	if healthy != 1 {
		t.Errorf("%d alarms on no healthy chat pod, want 1", healthy)
	}
}
