package main

import (
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// Test secrets: their values must never appear in a resource input outside
// a secret.
const (
	testJWTSecret = "jwt-secret-for-tests-0123456789abcdef"
	testDBPass    = "db-password-for-tests-9876543210"
)

// kindConfig is Pulumi.dev.yaml's target with the test secrets; tests
// override single keys.
func kindConfig(overrides ...string) map[string]string {
	c := map[string]string{
		"switchboard:target":           "kind",
		"switchboard:observability":    "existing",
		"switchboard:jwtSecret":        testJWTSecret,
		"switchboard:databasePassword": testDBPass,
	}
	for i := 0; i+1 < len(overrides); i += 2 {
		c["switchboard:"+overrides[i]] = overrides[i+1]
	}
	return c
}

// declared is one resource the program declared, with its inputs, its
// parent, the resources it depends on (explicitly or through inputs) and
// the aliases it is known by.
type declared struct {
	Type, Name string
	Inputs     resource.PropertyMap
	URN        resource.URN
	Parent     resource.URN
	Deps       []resource.URN
	Aliases    []*pulumirpc.Alias
}

// stack records every resource a run of the program declares. Like the
// engine, it keeps each resource's inputs from the run before (state), and
// a run keeps the old value of the inputs a resource ignores changes to.
type stack struct {
	mu        sync.Mutex
	name      string // the stack's
	resources []declared
	outputs   map[string]any
	state     map[resource.URN]resource.PropertyMap
	passwords int                   // random passwords handed out
	calls     []pulumi.MockCallArgs // the invokes (data sources) the program made
}

func (s *stack) NewResource(args pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	rpc := args.RegisterRPC
	parentType := tokens.Type("")
	if p := resource.URN(rpc.GetParent()); p != "" && p.QualifiedType() != resource.RootStackType {
		parentType = p.QualifiedType()
	}
	d := declared{
		Type: args.TypeToken, Name: args.Name, Inputs: args.Inputs, Parent: resource.URN(rpc.GetParent()),
		URN:     resource.NewURN(tokens.QName(s.name), "switchboard", parentType, tokens.Type(args.TypeToken), args.Name),
		Aliases: rpc.GetAliases(),
	}
	for _, u := range rpc.GetDependencies() {
		d.Deps = append(d.Deps, resource.URN(u))
	}
	for _, deps := range rpc.GetPropertyDependencies() {
		for _, u := range deps.GetUrns() {
			d.Deps = append(d.Deps, resource.URN(u))
		}
	}
	s.mu.Lock()
	if old, ok := s.state[d.URN]; ok {
		for _, path := range rpc.GetIgnoreChanges() {
			if v, ok := old[resource.PropertyKey(path)]; ok {
				d.Inputs[resource.PropertyKey(path)] = v
			}
		}
	}
	if s.state == nil {
		s.state = map[resource.URN]resource.PropertyMap{}
	}
	s.state[d.URN] = d.Inputs
	s.resources = append(s.resources, d)
	s.mu.Unlock()
	outs := d.Inputs.Copy()
	if strings.HasPrefix(args.TypeToken, "aws:") {
		outs["arn"] = resource.NewStringProperty("arn:aws:mock:::" + args.Name)
		// The provider names what has a name prefix.
		if p, ok := outs["namePrefix"]; ok && p.IsString() {
			outs["name"] = resource.NewStringProperty(p.StringValue() + "20261201000000000000000001")
		}
	}
	// What AWS and Kubernetes compute, and the program reads back.
	for k, v := range computed[args.TypeToken] {
		outs[resource.PropertyKey(k)] = resource.NewPropertyValue(v)
	}
	return args.Name + "-id", outs, nil
}

var computed = map[string]map[string]any{
	"aws:eks/cluster:Cluster": {
		"endpoint":             "https://mock.eks.amazonaws.com",
		"certificateAuthority": map[string]any{"data": "bW9jaw=="},
		"identities":           []any{map[string]any{"oidcs": []any{map[string]any{"issuer": "https://oidc.eks.mock/id/ABC"}}}},
		"vpcConfig":            map[string]any{"clusterSecurityGroupId": "sg-cluster"},
	},
	"aws:rds/instance:Instance": {
		"arn":               testDBInstanceARN,
		"resourceId":        testDBResourceID,
		"address":           "db.mock.rds.amazonaws.com",
		"masterUserSecrets": []any{map[string]any{"secretArn": "arn:aws:secretsmanager:mock:db"}},
	},
	"aws:elasticache/replicationGroup:ReplicationGroup": {
		"primaryEndpointAddress":       "redis.mock.cache.amazonaws.com",
		"configurationEndpointAddress": testConfigEndpoint,
		"memberClusters":               []any{"redis-001", "redis-002", "redis-003"},
	},
	"random:index/randomPassword:RandomPassword": {"result": testGrafanaPass},
	"kubernetes:networking.k8s.io/v1:Ingress": {
		"status": map[string]any{"loadBalancer": map[string]any{"ingress": []any{map[string]any{"hostname": "alb.mock.elb.amazonaws.com"}}}},
	},
}

// The configuration endpoint of a replication group in cluster mode.
const testConfigEndpoint = "clustercfg.mock.cache.amazonaws.com"

// The secret the invokes hand out; like the config's, never in plain text.
const testRedisToken = "redis-token-for-tests-0123456789"

const (
	// What the random provider generates.
	testGrafanaPass = "grafana-password-for-tests-0123456"
	// The RDS instance as AWS names it.
	testDBInstanceARN = "arn:aws:rds:eu-west-1:123456789012:db:switchboard-prod"
	testDBResourceID  = "db-ABCDEFGHIJKLMNOPQRSTUVWXY0"
)

// What the ALB lookups find: the load balancer and the chat target group
// the controller made, as ARN suffixes (the CloudWatch dimension values).
const (
	testALBArn         = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/switchboard-prod/50dc6c495c0c9188"
	testALBSuffix      = "app/switchboard-prod/50dc6c495c0c9188"
	testTargetGroupSfx = "targetgroup/k8s-switchbo-chat-6f1a2b3c4d/73e2d6bc24d8a067"
)

func (s *stack) Call(args pulumi.MockCallArgs) (resource.PropertyMap, error) {
	s.mu.Lock()
	s.calls = append(s.calls, args)
	s.mu.Unlock()
	switch args.Token {
	case "aws:index/getAvailabilityZones:getAvailabilityZones":
		return resource.NewPropertyMapFromMap(map[string]any{"names": []any{"mock-1a", "mock-1b", "mock-1c"}}), nil
	case "aws:secretsmanager/getRandomPassword:getRandomPassword":
		// Random: every call after the first hands out another.
		s.mu.Lock()
		defer s.mu.Unlock()
		s.passwords++
		if s.passwords > 1 {
			return resource.NewPropertyMapFromMap(map[string]any{"randomPassword": fmt.Sprintf("%s-%d", testRedisToken, s.passwords)}), nil
		}
		return resource.NewPropertyMapFromMap(map[string]any{"randomPassword": testRedisToken}), nil
	case "aws:lb/getLoadBalancer:getLoadBalancer":
		return resource.NewPropertyMapFromMap(map[string]any{"arn": testALBArn, "arnSuffix": testALBSuffix}), nil
	case "aws:lb/getTargetGroup:getTargetGroup":
		return resource.NewPropertyMapFromMap(map[string]any{
			"arn": "arn:aws:elasticloadbalancing:eu-west-1:123456789012:" + testTargetGroupSfx, "arnSuffix": testTargetGroupSfx,
			"loadBalancerArns": []any{testALBArn}, "tags": args.Args.Mappable()["tags"],
		}), nil
	}
	return args.Args, nil
}

// ARNs of the kind a user sets: not the AWS documentation's account, which
// the config check refuses as a placeholder.
const (
	testCertificateARN = "arn:aws:acm:eu-west-1:210987654321:certificate/4f9d3c2a-8b1e-4a6f-9c0d-5e7b2a1f3c4d"
	testAlarmTopicARN  = "arn:aws:sns:eu-west-1:210987654321:switchboard-alarms"
)

// awsConfig is a prod stack's settings; tests override single keys.
func awsConfig(overrides ...string) map[string]string {
	c := map[string]string{
		"aws:region":                  "eu-west-1",
		"switchboard:target":          "aws",
		"switchboard:jwtSecret":       testJWTSecret,
		"switchboard:certificateArn":  testCertificateARN,
		"switchboard:alarmTopicArn":   testAlarmTopicARN,
		"switchboard:apiAllowedCidrs": testAPICIDRs,
		"switchboard:alertReceivers":  testAlertReceivers,
	}
	for i := 0; i+1 < len(overrides); i += 2 {
		c["switchboard:"+overrides[i]] = overrides[i+1]
	}
	return c
}

// testAPICIDRs may reach the EKS API in the tests' stacks.
const testAPICIDRs = "198.51.100.0/24,203.0.113.7/32"

// run runs the program under mocks with config, as the stack dev (kind) or
// prod (aws); secretKeys lists the keys stored as secrets (all the secret
// ones, unless given).
func run(config map[string]string, secretKeys ...string) (*stack, error) {
	stackName := "dev"
	if config["switchboard:target"] == "aws" {
		stackName = "prod"
	}
	s := &stack{name: stackName}
	return s, s.run(config, secretKeys...)
}

// run runs the program once more on the stack's state.
func (s *stack) run(config map[string]string, secretKeys ...string) error {
	if secretKeys == nil {
		secretKeys = []string{"switchboard:jwtSecret", "switchboard:databasePassword"}
	}
	s.resources, s.calls = nil, nil
	return pulumi.RunErr(func(ctx *pulumi.Context) error {
		return program(ctx)
	}, pulumi.WithMocks("switchboard", s.name, s), func(info *pulumi.RunInfo) {
		info.Config = maps.Clone(config)
		info.ConfigSecretKeys = secretKeys
	})
}

func mustRun(t *testing.T, config map[string]string) *stack {
	t.Helper()
	s, err := run(config)
	if err != nil {
		t.Fatalf("program: %v", err)
	}
	return s
}

// of returns the resources of a type token suffix, e.g. "apps/v1:Deployment".
func (s *stack) of(kind string) []declared {
	var out []declared
	for _, r := range s.resources {
		if strings.HasSuffix(r.Type, ":"+kind) {
			out = append(out, r)
		}
	}
	return out
}

// one returns the resource of kind whose metadata.name is name.
func (s *stack) one(t *testing.T, kind, name string) map[string]any {
	t.Helper()
	for _, r := range s.of(kind) {
		m := plain(resource.NewObjectProperty(r.Inputs)).(map[string]any)
		if get(m, "metadata.name") == name {
			return m
		}
	}
	t.Fatalf("no %s named %s among %d resources", kind, name, len(s.resources))
	return nil
}

// plain turns a property value into Go maps, slices and scalars, unwrapping
// secrets.
func plain(v resource.PropertyValue) any {
	switch {
	case v.IsSecret():
		return plain(v.SecretValue().Element)
	case v.IsOutput():
		return plain(v.OutputValue().Element)
	case v.IsObject():
		m := map[string]any{}
		for k, e := range v.ObjectValue() {
			m[string(k)] = plain(e)
		}
		return m
	case v.IsArray():
		var a []any
		for _, e := range v.ArrayValue() {
			a = append(a, plain(e))
		}
		return a
	case v.IsComputed(), v.IsNull():
		return nil
	}
	return v.V
}

// get follows a dotted path through maps; a number indexes a slice.
func get(v any, path string) any {
	for _, k := range strings.Split(path, ".") {
		switch c := v.(type) {
		case map[string]any:
			v = c[k]
		case []any:
			var i int
			if _, err := fmt.Sscan(k, &i); err != nil || i >= len(c) {
				return nil
			}
			v = c[i]
		default:
			return nil
		}
	}
	return v
}

// plaintexts calls found for every string outside a secret that holds one
// of the values.
func plaintexts(v resource.PropertyValue, path string, values []string, found func(path string)) {
	switch {
	case v.IsSecret():
		return
	case v.IsOutput():
		if !v.OutputValue().Secret {
			plaintexts(v.OutputValue().Element, path, values, found)
		}
	case v.IsObject():
		for k, e := range v.ObjectValue() {
			plaintexts(e, path+"."+string(k), values, found)
		}
	case v.IsArray():
		for i, e := range v.ArrayValue() {
			plaintexts(e, fmt.Sprintf("%s.%d", path, i), values, found)
		}
	case v.IsString():
		for _, s := range values {
			if strings.Contains(v.StringValue(), s) {
				found(path)
			}
		}
	}
}
