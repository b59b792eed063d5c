// Package alarms raises CloudWatch alarms on the AWS-managed parts of the
// prod stack, which Prometheus does not see: the ALB, and ElastiCache and
// RDS where the stack has them. Each alarm notifies one SNS topic.
//
// An alarm fires only if it names a dimension set its metric is published
// with (a metric is the namespace, name and exact set of dimensions;
// CloudWatch matches no subset), and a dead resource publishes nothing:
// each alarm says what missing data means (TreatMissingData). The metric
// and dimension sets, and when each metric is reported, are the AWS pages'
// that infra/aws_test.go's TestEveryAlarmCanFire cites.
package alarms

import (
	"fmt"
	"slices"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/cloudwatch"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/lb"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/switchboard-dev/switchboard/infra/managed"
)

// Args say what to watch.
type Args struct {
	Topic string // SNS topic ARN
	// LoadBalancer is the ALB's name. TargetGroupTags are the tags the
	// AWS Load Balancer Controller put on the chat pods' target group
	// (edge.TargetGroupTags); they resolve once the Ingress has made the
	// ALB, so the lookups run after both exist.
	LoadBalancer    string
	TargetGroupTags pulumi.StringMapInput
	// RedisNodes are every node of the replication group: each primary
	// and replica of each shard, for a node of any may fill up or evict.
	// None without ElastiCache.
	RedisNodes []managed.CacheNode
	// DBInstance is the RDS instance's identifier; nil without RDS.
	DBInstance pulumi.StringInput
	Tags       pulumi.StringMap
}

// Alarms is the component.
type Alarms struct {
	pulumi.ResourceState
}

// What an alarm makes of a period without data (CloudWatch, "Configuring
// how CloudWatch alarms treat missing data").
const (
	// Breaching: the metric is reported every minute while its resource
	// lives, so no data means the resource is gone, stopped or cut off.
	Breaching = "breaching"
	// NotBreaching: the metric is reported only when it is not zero (no
	// data is zero), or another alarm of the same resource already treats
	// its silence as breaching.
	NotBreaching = "notBreaching"
)

// alarm is one CloudWatch alarm's rule.
type alarm struct {
	name, namespace, metric, stat, comparison string
	threshold                                 float64
	periods                                   int
	dimensions                                pulumi.StringMapInput
	missing                                   string
	description                               string
}

// New declares the alarms.
func New(ctx *pulumi.Context, name string, args Args, opts ...pulumi.ResourceOption) (*Alarms, error) {
	a := &Alarms{}
	if err := ctx.RegisterComponentResource("switchboard:index:Alarms", name, a, opts...); err != nil {
		return nil, err
	}
	parent := pulumi.Parent(a)
	// The ALB publishes its target metrics per target group and load
	// balancer, never per load balancer alone; both are made by the
	// controller, so their ARN suffixes are looked up once they exist: the
	// ALB by the name the Ingress gives it, the target group by the
	// controller's tracking tags (name: k8s-<ns>-<svc>-<hash>, not
	// computable here). Every `pulumi up` looks them up again, so a target
	// group the controller replaced is followed at the next update. The
	// target group must be the ALB's: a lookup matching another (the same
	// namespace and Ingress in another cluster has another cluster tag)
	// fails.
	alb := args.TargetGroupTags.ToStringMapOutput().ApplyT(func(tags map[string]string) (map[string]string, error) {
		l, err := lb.LookupLoadBalancer(ctx, &lb.LookupLoadBalancerArgs{Name: pulumi.StringRef(args.LoadBalancer)}, parent)
		if err != nil {
			return nil, fmt.Errorf("find the ALB %s: %w", args.LoadBalancer, err)
		}
		tg, err := lb.LookupTargetGroup(ctx, &lb.LookupTargetGroupArgs{Tags: tags}, parent)
		if err != nil {
			return nil, fmt.Errorf("find the chat target group tagged %v: %w", tags, err)
		}
		if !slices.Contains(tg.LoadBalancerArns, l.Arn) {
			return nil, fmt.Errorf("target group %s (tagged %v) is not the ALB %s's: it serves %v", tg.Arn, tags, l.Arn, tg.LoadBalancerArns)
		}
		return map[string]string{"LoadBalancer": l.ArnSuffix, "TargetGroup": tg.ArnSuffix}, nil
	}).(pulumi.StringMapOutput)
	loadBalancer := pulumi.StringMap{"LoadBalancer": alb.MapIndex(pulumi.String("LoadBalancer"))}
	targets := pulumi.StringMap{"TargetGroup": alb.MapIndex(pulumi.String("TargetGroup")), "LoadBalancer": alb.MapIndex(pulumi.String("LoadBalancer"))}
	rules := []alarm{
		// Reported only when not zero: no data is no 5xx.
		{"alb-5xx", "AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", "Sum", "GreaterThanThreshold", 10, 5,
			loadBalancer, NotBreaching, "The ALB answered more than 10 5xx a minute for 5 minutes: no healthy chat pod, or pods refusing (draining, Redis down)."},
		{"alb-target-5xx", "AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "Sum", "GreaterThanThreshold", 10, 5,
			targets, NotBreaching, "Chat pods answered more than 10 5xx a minute for 5 minutes."},
		// The host counts are reported every minute while health checks
		// run: silence means the target group or the ALB is gone, which
		// alb-no-healthy pages for.
		{"alb-unhealthy", "AWS/ApplicationELB", "UnHealthyHostCount", "Maximum", "GreaterThanThreshold", 0, 5,
			targets, NotBreaching, "A chat pod has failed the ALB's /ready check for 5 minutes."},
		{"alb-no-healthy", "AWS/ApplicationELB", "HealthyHostCount", "Minimum", "LessThanThreshold", 1, 2,
			targets, Breaching, "No chat pod has passed the ALB's /ready check for 2 minutes, or the target group reports nothing (it or the ALB is gone): the chat is down."},
	}
	if args.DBInstance != nil {
		db := pulumi.StringMap{"DBInstanceIdentifier": args.DBInstance}
		rules = append(rules,
			// RDS reports every minute for a running instance: no CPU data
			// means it is stopped, gone or unreachable, and db-cpu pages; the
			// other two stay quiet then rather than page three times.
			alarm{"db-cpu", "AWS/RDS", "CPUUtilization", "Average", "GreaterThanThreshold", 80, 10,
				db, Breaching, "RDS CPU above 80 % for 10 minutes (persistence will lag), or RDS reports no CPU (the instance is stopped or gone)."},
			alarm{"db-free-storage", "AWS/RDS", "FreeStorageSpace", "Minimum", "LessThanThreshold", 10 << 30, 5,
				db, NotBreaching, "Less than 10 GiB free on RDS (autoscaling storage may be at its maximum)."},
			alarm{"db-connections", "AWS/RDS", "DatabaseConnections", "Maximum", "GreaterThanThreshold", 400, 5,
				db, NotBreaching, "More than 400 connections to RDS for 5 minutes: check the chat pods' pools and their count."},
		)
	}
	for _, node := range args.RedisNodes {
		i := node.Label
		dims := pulumi.StringMap{"CacheClusterId": node.ID}
		rules = append(rules,
			// ElastiCache reports each node's metrics every minute: no
			// engine CPU means the node is gone, and this pages.
			alarm{"redis-" + i + "-cpu", "AWS/ElastiCache", "EngineCPUUtilization", "Average", "GreaterThanThreshold", 75, 5,
				dims, Breaching, "Redis engine CPU above 75 % for 5 minutes (fan-out and sends slow down for every instance), or the node reports nothing (it is gone or being replaced)."},
			alarm{"redis-" + i + "-memory", "AWS/ElastiCache", "DatabaseMemoryUsagePercentage", "Maximum", "GreaterThanThreshold", 80, 5,
				dims, NotBreaching, "Redis memory above 80 %: the persist stream may be growing (Postgres lagging)."},
			// One period: a late data point must not page as an eviction.
			alarm{"redis-" + i + "-evictions", "AWS/ElastiCache", "Evictions", "Sum", "GreaterThanThreshold", 0, 1,
				dims, NotBreaching, "Redis evicted keys: room history and the persist stream must never be evicted."},
		)
	}
	for _, r := range rules {
		if _, err := cloudwatch.NewMetricAlarm(ctx, name+"-"+r.name, &cloudwatch.MetricAlarmArgs{
			AlarmDescription:   pulumi.String(r.description),
			Namespace:          pulumi.String(r.namespace),
			MetricName:         pulumi.String(r.metric),
			Statistic:          pulumi.String(r.stat),
			ComparisonOperator: pulumi.String(r.comparison),
			Threshold:          pulumi.Float64(r.threshold),
			Period:             pulumi.Int(60),
			EvaluationPeriods:  pulumi.Int(r.periods),
			Dimensions:         r.dimensions,
			TreatMissingData:   pulumi.String(r.missing),
			AlarmActions:       pulumi.Array{pulumi.String(args.Topic)},
			OkActions:          pulumi.Array{pulumi.String(args.Topic)},
			Tags:               args.Tags,
		}, parent); err != nil {
			return nil, fmt.Errorf("alarms %s: %s: %w", name, r.name, err)
		}
	}
	return a, ctx.RegisterResourceOutputs(a, pulumi.Map{})
}
