// Package alarms raises CloudWatch alarms on the AWS-managed parts of the
// prod stack, which Prometheus does not see: the ALB, ElastiCache and RDS.
// Each alarm notifies one SNS topic.
package alarms

import (
	"fmt"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/cloudwatch"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/lb"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Args say what to watch.
type Args struct {
	Topic string // SNS topic ARN
	// LoadBalancer is the ALB's name; Ready resolves once the Ingress has
	// made it, so the lookup runs after the ALB exists.
	LoadBalancer  string
	Ready         pulumi.StringInput
	RedisClusters pulumi.StringArrayInput
	RedisMembers  int // how many clusters RedisClusters lists
	DBInstance    pulumi.StringInput
	Tags          pulumi.StringMap
}

// Alarms is the component.
type Alarms struct {
	pulumi.ResourceState
}

// alarm is one CloudWatch alarm's rule.
type alarm struct {
	name, namespace, metric, stat, comparison string
	threshold                                 float64
	periods                                   int
	dimensions                                pulumi.StringMapInput
	description                               string
}

// New declares the alarms.
func New(ctx *pulumi.Context, name string, args Args, opts ...pulumi.ResourceOption) (*Alarms, error) {
	a := &Alarms{}
	if err := ctx.RegisterComponentResource("switchboard:index:Alarms", name, a, opts...); err != nil {
		return nil, err
	}
	parent := pulumi.Parent(a)
	alb := pulumi.All(args.Ready).ApplyT(func(_ []any) (string, error) {
		l, err := lb.LookupLoadBalancer(ctx, &lb.LookupLoadBalancerArgs{Name: pulumi.StringRef(args.LoadBalancer)}, parent)
		if err != nil {
			return "", fmt.Errorf("find the ALB %s: %w", args.LoadBalancer, err)
		}
		return l.ArnSuffix, nil
	}).(pulumi.StringOutput)
	rules := []alarm{
		{"alb-5xx", "AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", "Sum", "GreaterThanThreshold", 10, 5,
			pulumi.StringMap{"LoadBalancer": alb}, "The ALB answered more than 10 5xx a minute for 5 minutes: no healthy chat pod, or pods refusing (draining, Redis down)."},
		{"alb-target-5xx", "AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "Sum", "GreaterThanThreshold", 10, 5,
			pulumi.StringMap{"LoadBalancer": alb}, "Chat pods answered more than 10 5xx a minute for 5 minutes."},
		{"alb-unhealthy", "AWS/ApplicationELB", "UnHealthyHostCount", "Maximum", "GreaterThanThreshold", 0, 5,
			pulumi.StringMap{"LoadBalancer": alb}, "A chat pod has failed the ALB's /ready check for 5 minutes."},
		{"db-cpu", "AWS/RDS", "CPUUtilization", "Average", "GreaterThanThreshold", 80, 10,
			pulumi.StringMap{"DBInstanceIdentifier": args.DBInstance}, "RDS CPU above 80 % for 10 minutes: persistence will lag."},
		{"db-free-storage", "AWS/RDS", "FreeStorageSpace", "Minimum", "LessThanThreshold", 10 << 30, 5,
			pulumi.StringMap{"DBInstanceIdentifier": args.DBInstance}, "Less than 10 GiB free on RDS (autoscaling storage may be at its maximum)."},
		{"db-connections", "AWS/RDS", "DatabaseConnections", "Maximum", "GreaterThanThreshold", 400, 5,
			pulumi.StringMap{"DBInstanceIdentifier": args.DBInstance}, "More than 400 connections to RDS for 5 minutes: check the chat pods' pools and their count."},
	}
	for i := range args.RedisMembers {
		member := args.RedisClusters.ToStringArrayOutput().Index(pulumi.Int(i))
		dims := pulumi.StringMap{"CacheClusterId": member}
		rules = append(rules,
			alarm{fmt.Sprintf("redis-%d-cpu", i), "AWS/ElastiCache", "EngineCPUUtilization", "Average", "GreaterThanThreshold", 75, 5,
				dims, "Redis engine CPU above 75 % for 5 minutes: fan-out and sends slow down for every instance."},
			alarm{fmt.Sprintf("redis-%d-memory", i), "AWS/ElastiCache", "DatabaseMemoryUsagePercentage", "Maximum", "GreaterThanThreshold", 80, 5,
				dims, "Redis memory above 80 %: the persist stream may be growing (Postgres lagging)."},
			alarm{fmt.Sprintf("redis-%d-evictions", i), "AWS/ElastiCache", "Evictions", "Sum", "GreaterThanThreshold", 0, 1,
				dims, "Redis evicted keys: room history and the persist stream must never be evicted."},
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
			TreatMissingData:   pulumi.String("notBreaching"),
			AlarmActions:       pulumi.Array{pulumi.String(args.Topic)},
			OkActions:          pulumi.Array{pulumi.String(args.Topic)},
			Tags:               args.Tags,
		}, parent); err != nil {
			return nil, fmt.Errorf("alarms %s: %s: %w", name, r.name, err)
		}
	}
	return a, ctx.RegisterResourceOutputs(a, pulumi.Map{})
}
