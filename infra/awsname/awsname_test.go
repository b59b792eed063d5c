package awsname

import (
	"strings"
	"testing"
)

// stacks are the names every derivation must survive: the stack files',
// the e2e's (staging-test-<unix seconds>), 60+ characters, every character
// Pulumi allows in a stack name, and case alone telling two apart.
var stacks = []string{
	"dev", "staging", "prod",
	"staging-test-1764547200",
	"staging-test-1764547200-with-a-much-longer-suffix-for-the-ci-run-42",
	strings.Repeat("very-long-stack-name-", 12),
	"Prod_EU.west-1", "prod_eu.west-1", "-x-", "internal", "sg",
}

// Each documented rule, broken once: Check refuses what AWS refuses.
func TestCheckRefusesWhatTheDocsRefuse(t *testing.T) {
	for _, tc := range []struct {
		rule Rule
		name string
		why  string
	}{
		{LoadBalancer, strings.Repeat("a", 33), "ELBv2: at most 32 characters"},
		{LoadBalancer, "internal-chat", `ELBv2: must not begin with "internal-"`},
		{LoadBalancer, "chat-", "ELBv2: must not end with a hyphen"},
		{LoadBalancer, "-chat", "ELBv2: must not begin with a hyphen"},
		{LoadBalancer, "chat_prod", "ELBv2: alphanumerics and hyphens only"},
		{ReplicationGroup, strings.Repeat("a", 41), "ElastiCache: 1 to 40 characters"},
		{ReplicationGroup, "1redis", "ElastiCache: first character a letter"},
		{ReplicationGroup, "redis--prod", "ElastiCache: no two consecutive hyphens"},
		{ReplicationGroup, "redis-", "ElastiCache: cannot end with a hyphen"},
		{ReplicationGroup, "Redis", "ElastiCache: stored lowercase"},
		{DBInstance, strings.Repeat("a", 64), "RDS: 1 to 63 characters"},
		{DBInstance, "9db", "RDS: first character a letter"},
		{DBInstance, "db--prod", "RDS: no two consecutive hyphens"},
		{DBInstance, "db-", "RDS: can't end with a hyphen"},
		{DBSnapshot, "db--final", "RDS: no two consecutive hyphens"},
		{RolePrefix, strings.Repeat("a", 39), "IAM: role name 64 less the 26-character suffix"},
		{RolePrefix, "role name", "IAM: [\\w+=,.@-] only"},
		{SecurityGroupPrefix, "sg-data", `EC2: cannot start with "sg-"`},
		{SecurityGroupPrefix, strings.Repeat("a", 230), "EC2: 255 less the 26-character suffix"},
		{Cluster, strings.Repeat("a", 101), "EKS: at most 100 characters"},
		{Cluster, "_cluster", "EKS: must start with an alphanumeric character"},
		{Cluster, "cluster.prod", "EKS: alphanumerics, hyphens and underscores only"},
	} {
		if err := tc.rule.Check(tc.name); err == nil {
			t.Errorf("%s %q accepted: %s", tc.rule.Kind, tc.name, tc.why)
		}
	}
}

// prefixes are the names' first parts: the chat server's, and a team's
// service (blueprint's AWS.Name) whose prefix alone passes the load
// balancer's 32 characters.
var prefixes = []string{"switchboard", "acme-payments-websocket-gateway-eu"}

// Every name of every stack, whatever the prefix, fits its rule, is
// stable, keeps a short stack's name readable, and differs from every
// other stack's and prefix's.
func TestEveryNameFitsForAnyStackName(t *testing.T) {
	seen := map[string]string{}
	for _, prefix := range prefixes {
		for _, stack := range stacks {
			everyNameFits(t, seen, prefix, stack)
		}
	}
	if n, _ := For("switchboard", "prod"); n.LoadBalancer != "switchboard-prod" || n.DBInstance != "switchboard-prod" {
		t.Errorf("names %+v: want a name that fits kept as it is", n)
	}
}

func everyNameFits(t *testing.T, seen map[string]string, prefix, stack string) {
	t.Helper()
	at := prefix + "/" + stack
	n, err := For(prefix, stack)
	if err != nil {
		t.Errorf("%s: %v", at, err)
		return
	}
	if again, _ := For(prefix, stack); again != n {
		t.Errorf("%s: names %v then %v: want them stable", at, n, again)
	}
	for _, got := range []struct {
		rule Rule
		name string
	}{
		{Cluster, n.Cluster}, {LoadBalancer, n.LoadBalancer}, {ReplicationGroup, n.ReplicationGroup},
		{DBInstance, n.DBInstance}, {DBSnapshot, n.DBFinalSnapshot},
	} {
		if err := got.rule.Check(got.name); err != nil {
			t.Errorf("%s: %v", at, err)
		}
		if other, ok := seen[got.rule.Kind+"/"+got.name]; ok {
			t.Errorf("%s and %s share the %s %q", other, at, got.rule.Kind, got.name)
		}
		seen[got.rule.Kind+"/"+got.name] = at
	}
	for _, rule := range []Rule{RolePrefix, SecurityGroupPrefix} {
		p, err := rule.Prefix(prefix, stack, "cluster-nodes")
		if err != nil {
			t.Errorf("%s: %v", at, err)
			continue
		}
		if err := rule.Check(p); err != nil || !strings.HasSuffix(p, "-") {
			t.Errorf("%s: prefix %q (%v): want it valid and ending in a hyphen", at, p, err)
		}
	}
}

// A team's prefix longer than a name's limit is cut to it, keeping what
// fits readable: ELBv2 load balancer names are at most 32 characters
// (https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateLoadBalancer.html),
// ElastiCache replication group ids 40
// (https://docs.aws.amazon.com/AmazonElastiCache/latest/APIReference/API_CreateReplicationGroup.html).
func TestALongPrefixIsCutToEachLimit(t *testing.T) {
	n, err := For("acme-payments-websocket-gateway-eu", "prod")
	if err != nil {
		t.Fatal(err)
	}
	for _, got := range []struct {
		name, want string
		max        int
	}{
		{n.LoadBalancer, "acme-payments-websocket", 32},
		{n.ReplicationGroup, "acme-payments-websocket-gateway", 40},
		{n.DBInstance, "acme-payments-websocket-gateway-eu-prod", 63},
	} {
		if len(got.name) > got.max || !strings.HasPrefix(got.name, got.want) {
			t.Errorf("name %q: want at most %d characters, starting %q", got.name, got.max, got.want)
		}
	}
}

// A prefix that starts every name where AWS forbids it is refused, citing
// the rule: no load balancer name begins with "internal-", no replication
// group or DB instance with a digit.
func TestAPrefixNoNameMayStartWithIsRefused(t *testing.T) {
	for _, prefix := range []string{"internal", "9lives", "_"} {
		if n, err := For(prefix, "prod"); err == nil {
			t.Errorf("prefix %q: names %+v, want a refusal", prefix, n)
		} else if !strings.Contains(err.Error(), "docs.aws.amazon.com") {
			t.Errorf("prefix %q: refusal %q: want the documented rule cited", prefix, err)
		}
	}
}

// What no cut can fix is refused, with the rule's documentation.
func TestUnfittableNamesAreRefused(t *testing.T) {
	for _, tc := range []struct {
		rule  Rule
		parts []string
	}{
		{LoadBalancer, []string{"internal", "chat"}},
		{DBInstance, []string{"1st", "db"}},
		{ReplicationGroup, []string{"_"}},
		{SecurityGroupPrefix, []string{"sg", "data"}},
		{Cluster, nil},
	} {
		if name, err := tc.rule.Fit(tc.parts...); err == nil {
			t.Errorf("%s of %q: derived %q, want a refusal", tc.rule.Kind, tc.parts, name)
		} else if tc.parts != nil && !strings.Contains(err.Error(), "docs.aws.amazon.com") {
			t.Errorf("refusal %q: want the documented rule cited", err)
		}
	}
}

// docs/deploy-aws.md's example: the e2e's stack name.
func TestTheE2EStackNameIsCutAsDocumented(t *testing.T) {
	n, err := For("switchboard", "staging-test-1764547200")
	if err != nil || n.LoadBalancer != "switchboard-staging-tes-77332345" {
		t.Errorf("ALB %q (%v): want switchboard-staging-tes-77332345, as docs/deploy-aws.md says", n.LoadBalancer, err)
	}
}
