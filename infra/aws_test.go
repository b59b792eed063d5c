package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"

	"github.com/switchboard-dev/switchboard/infra/autoscaling"
	"github.com/switchboard-dev/switchboard/infra/awsname"
	"github.com/switchboard-dev/switchboard/infra/eksaddon"
	"github.com/switchboard-dev/switchboard/infra/iampolicy"
	"github.com/switchboard-dev/switchboard/infra/stackconfig"
)

// named returns the inputs of the resource of kind declared as name.
func (s *stack) named(t *testing.T, kind, name string) map[string]any {
	t.Helper()
	for _, r := range s.of(kind) {
		if r.Name == name {
			return plain(resource.NewObjectProperty(r.Inputs)).(map[string]any)
		}
	}
	t.Fatalf("no %s declared as %s", kind, name)
	return nil
}

func (s *stack) all(kind string) []map[string]any {
	var out []map[string]any
	for _, r := range s.of(kind) {
		out = append(out, plain(resource.NewObjectProperty(r.Inputs)).(map[string]any))
	}
	return out
}

// ingress returns the chat Ingress's annotations, target-group attributes
// split out.
func ingress(t *testing.T, s *stack) (map[string]any, map[string]string) {
	an := get(s.one(t, "networking.k8s.io/v1:Ingress", "chat"), "metadata.annotations").(map[string]any)
	attrs := map[string]string{}
	for _, kv := range strings.Split(an["alb.ingress.kubernetes.io/target-group-attributes"].(string), ",") {
		k, v, _ := strings.Cut(kv, "=")
		attrs[k] = v
	}
	return an, attrs
}

func TestALBSticksByCookieToPodIPs(t *testing.T) {
	for _, d := range []string{"", "30m", "24h"} {
		t.Run("stickiness="+d, func(t *testing.T) {
			cfg, want := awsConfig(), 3600
			if d != "" {
				cfg = awsConfig("stickiness", d)
				dur, _ := time.ParseDuration(d)
				want = int(dur.Seconds())
			}
			an, attrs := ingress(t, mustRun(t, cfg))
			if an["alb.ingress.kubernetes.io/target-type"] != "ip" {
				t.Errorf("target-type %v: want ip, so that the ALB reaches pods directly", an["alb.ingress.kubernetes.io/target-type"])
			}
			if attrs["stickiness.enabled"] != "true" || attrs["stickiness.type"] != "lb_cookie" || attrs["stickiness.lb_cookie.duration_seconds"] != strconv.Itoa(want) {
				t.Errorf("target group attributes %v: want lb_cookie stickiness for %ds", attrs, want)
			}
			if an["alb.ingress.kubernetes.io/healthcheck-path"] != "/ready" {
				t.Errorf("health check %v: want /ready", an["alb.ingress.kubernetes.io/healthcheck-path"])
			}
		})
	}
}

func TestALBIdleTimeoutOutlastsTwoPings(t *testing.T) {
	for _, ping := range []string{"", "10s", "25s", "55s"} {
		t.Run("ping="+ping, func(t *testing.T) {
			cfg := awsConfig()
			p := 25 * time.Second
			if ping != "" {
				cfg = awsConfig("pingInterval", ping)
				p, _ = time.ParseDuration(ping)
			}
			an, _ := ingress(t, mustRun(t, cfg))
			v := strings.TrimPrefix(an["alb.ingress.kubernetes.io/load-balancer-attributes"].(string), "idle_timeout.timeout_seconds=")
			idle, err := strconv.Atoi(v)
			if err != nil || time.Duration(idle)*time.Second <= 2*p {
				t.Errorf("idle timeout %q with ping %s: want more than %s", v, p, 2*p)
			}
		})
	}
}

func TestDeregistrationDelayIsTheDrainWindow(t *testing.T) {
	for _, tc := range []struct {
		preStop, delay, timeout string
		window                  int
	}{{"5s", "5s", "20s", 30}, {"10s", "15s", "1m", 85}} {
		t.Run(fmt.Sprint(tc.window), func(t *testing.T) {
			s := mustRun(t, awsConfig("preStop", tc.preStop, "drainDelay", tc.delay, "drainTimeout", tc.timeout))
			_, attrs := ingress(t, s)
			if attrs["deregistration_delay.timeout_seconds"] != strconv.Itoa(tc.window) {
				t.Errorf("deregistration delay %v: want the drain window %d s", attrs["deregistration_delay.timeout_seconds"], tc.window)
			}
			grace := get(s.one(t, "apps/v1:Deployment", "chat"), "spec.template.spec.terminationGracePeriodSeconds").(float64)
			if grace <= float64(tc.window) {
				t.Errorf("grace %v s: want more than preStop + drain = %d s", grace, tc.window)
			}
		})
	}
}

func TestHTTPSWithRedirectAndOptionalWAF(t *testing.T) {
	an, _ := ingress(t, mustRun(t, awsConfig()))
	if an["alb.ingress.kubernetes.io/ssl-redirect"] != "443" || !strings.HasPrefix(an["alb.ingress.kubernetes.io/certificate-arn"].(string), "arn:aws:acm:") {
		t.Errorf("annotations %v: want an HTTPS listener with the ACM certificate and HTTP redirected", an)
	}
	if _, ok := an["alb.ingress.kubernetes.io/wafv2-acl-arn"]; ok {
		t.Error("a WAF ACL is attached though none is configured")
	}
	const waf = "arn:aws:wafv2:eu-west-1:210987654321:regional/webacl/chat/a1b2c3"
	an, _ = ingress(t, mustRun(t, awsConfig("wafAclArn", waf)))
	if an["alb.ingress.kubernetes.io/wafv2-acl-arn"] != waf {
		t.Error("the configured WAF ACL is not attached")
	}
	ns := mustRun(t, awsConfig()).one(t, "core/v1:Namespace", "switchboard")
	if get(ns, "metadata.labels").(map[string]any)["elbv2.k8s.aws/pod-readiness-gate-inject"] != "enabled" {
		t.Error("the chat namespace does not enable the ALB's pod readiness gates")
	}
}

func s0(t *testing.T, s *stack, kind string) map[string]any {
	all := s.all(kind)
	if len(all) != 1 {
		t.Fatalf("%d %s, want 1", len(all), kind)
	}
	return all[0]
}

func TestRedisIsEncryptedAuthenticatedAndFailsOver(t *testing.T) {
	s := mustRun(t, awsConfig())
	r := s0(t, s, "elasticache/replicationGroup:ReplicationGroup")
	for k, want := range map[string]any{
		"transitEncryptionEnabled": true, "atRestEncryptionEnabled": true,
		"automaticFailoverEnabled": true, "multiAzEnabled": true, "authToken": testRedisToken,
		"numCacheClusters": float64(3), "port": float64(6379),
	} {
		if r[k] != want {
			t.Errorf("%s = %v, want %v", k, r[k], want)
		}
	}
	if !strings.HasPrefix(r["engineVersion"].(string), "7.") {
		t.Errorf("engine %v: want Redis 7.x", r["engineVersion"])
	}
	if url, _ := get(s.one(t, "core/v1:Secret", "chat-env"), "stringData.REDIS_URL").(string); !strings.HasPrefix(url, "rediss://:"+testRedisToken+"@") {
		t.Errorf("REDIS_URL %q: want rediss:// with the auth token", url)
	}
	// The token lives in Secrets Manager, generated once.
	v := s0(t, s, "secretsmanager/secretVersion:SecretVersion")
	if v["secretString"] != testRedisToken {
		t.Error("the auth token is not kept in Secrets Manager")
	}
}

func TestPostgresIsPrivateEncryptedManagedAndProtected(t *testing.T) {
	for _, tc := range []struct {
		name      string
		config    map[string]string
		protected bool
		multiAZ   bool
	}{
		{"prod", awsConfig(), true, true},
		{"staging", awsConfig("deletionProtection", "false", "dbMultiAz", "false"), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustRun(t, tc.config)
			db := s0(t, s, "rds/instance:Instance")
			for k, want := range map[string]any{
				"publiclyAccessible": false, "storageEncrypted": true, "manageMasterUserPassword": true,
				"deletionProtection": tc.protected, "multiAz": tc.multiAZ, "performanceInsightsEnabled": true,
				"backupRetentionPeriod": float64(7),
			} {
				if db[k] != want {
					t.Errorf("%s = %v, want %v", k, db[k], want)
				}
			}
			if _, ok := db["password"]; ok {
				t.Error("the master password is given in the program: RDS must manage it")
			}
			params := get(s0(t, s, "rds/parameterGroup:ParameterGroup"), "parameters.0").(map[string]any)
			if params["name"] != "rds.force_ssl" || params["value"] != "1" {
				t.Errorf("parameters %v: want rds.force_ssl=1", params)
			}
			if url, _ := get(s.one(t, "core/v1:Secret", "chat-env"), "stringData.DATABASE_URL").(string); !strings.Contains(url, "sslmode=require") {
				t.Errorf("DATABASE_URL %q: want TLS", url)
			}
		})
	}
}

func TestSecurityGroupsAdmitOnlyTheCluster(t *testing.T) {
	s := mustRun(t, awsConfig())
	ports := map[float64]bool{}
	for _, sg := range s.all("ec2/securityGroup:SecurityGroup") {
		rules, _ := sg["ingress"].([]any)
		if len(rules) != 1 {
			t.Errorf("%v: %d ingress rules, want 1", sg["description"], len(rules))
			continue
		}
		r := rules[0].(map[string]any)
		if r["cidrBlocks"] != nil || r["ipv6CidrBlocks"] != nil || get(r, "securityGroups.0") != "sg-cluster" || r["fromPort"] != r["toPort"] {
			t.Errorf("%v: rule %v: want one port from the cluster security group only", sg["description"], r)
		}
		ports[r["fromPort"].(float64)] = true
		if e, _ := sg["egress"].([]any); len(e) != 0 {
			t.Errorf("%v: egress %v, want none", sg["description"], e)
		}
	}
	if !ports[6379] || !ports[5432] || len(ports) != 2 {
		t.Errorf("ports opened %v: want 6379 and 5432 only", ports)
	}
}

func TestNoIAMPolicyAllowsEveryActionOnEverything(t *testing.T) {
	s := mustRun(t, awsConfig())
	checked := 0
	for _, doc := range append(s.all("iam/role:Role"), s.all("iam/rolePolicy:RolePolicy")...) {
		for _, field := range []string{"assumeRolePolicy", "policy"} {
			text, ok := doc[field].(string)
			if !ok {
				continue
			}
			// IAM's form: Action and Resource a string or a list.
			var d iampolicy.Document
			if err := json.Unmarshal([]byte(text), &d); err != nil {
				t.Errorf("%s: %v", field, err)
				continue
			}
			checked++
			for _, st := range d.Statement {
				for _, a := range st.Action {
					if st.Effect == "Allow" && (a == "*" || strings.HasSuffix(a, ":*")) {
						t.Errorf("%s allows %q: name the actions", field, a)
					}
				}
			}
		}
	}
	if checked < 6 {
		t.Errorf("checked %d policy documents; the stack has more", checked)
	}
}

func TestNetworkSpansThreeZones(t *testing.T) {
	for _, tc := range []struct {
		natPerAZ string
		nats     int
	}{{"true", 3}, {"false", 1}} {
		t.Run("natPerAz="+tc.natPerAZ, func(t *testing.T) {
			s := mustRun(t, awsConfig("natPerAz", tc.natPerAZ))
			roles := map[string]int{}
			zones := map[any]bool{}
			for _, sn := range s.all("ec2/subnet:Subnet") {
				tags := sn["tags"].(map[string]any)
				for _, role := range []string{"kubernetes.io/role/elb", "kubernetes.io/role/internal-elb"} {
					if tags[role] == "1" && tags["kubernetes.io/cluster/switchboard-prod"] == "shared" {
						roles[role]++
					}
				}
				zones[sn["availabilityZone"]] = true
			}
			if roles["kubernetes.io/role/elb"] != 3 || roles["kubernetes.io/role/internal-elb"] != 3 || len(zones) != 3 {
				t.Errorf("subnets by discovery tag %v over %d zones: want 3 public and 3 private over 3", roles, len(zones))
			}
			if got := len(s.of("ec2/natGateway:NatGateway")); got != tc.nats {
				t.Errorf("%d NAT gateways, want %d", got, tc.nats)
			}
			if len(s.of("ec2/flowLog:FlowLog")) != 1 {
				t.Error("no VPC flow log")
			}
			ng := s0(t, s, "eks/nodeGroup:NodeGroup")
			for _, id := range ng["subnetIds"].([]any) {
				if !strings.Contains(id.(string), "private") {
					t.Errorf("node group subnet %v: want private subnets only", id)
				}
			}
		})
	}
}

func TestEKSAddonsArePinnedAndIRSAIsScoped(t *testing.T) {
	s := mustRun(t, awsConfig())
	addons := map[any]any{}
	for _, a := range s.all("eks/addon:Addon") {
		addons[a["addonName"]] = a["addonVersion"]
	}
	for _, name := range []string{"vpc-cni", "coredns", "kube-proxy", "aws-ebs-csi-driver"} {
		if v, _ := addons[name].(string); !strings.HasPrefix(v, "v") {
			t.Errorf("add-on %s version %v: want a pinned version", name, addons[name])
		}
	}
	oneAccount := regexp.MustCompile(`:sub":"system:serviceaccount:[a-z0-9-]+:[a-z0-9-]+"`)
	irsa := 0
	for _, r := range s.all("iam/role:Role") {
		if strings.Contains(r["assumeRolePolicy"].(string), "AssumeRoleWithWebIdentity") {
			irsa++
			if !oneAccount.MatchString(r["assumeRolePolicy"].(string)) {
				t.Errorf("IRSA trust %s: want it bound to one service account", r["assumeRolePolicy"])
			}
		}
	}
	// Load balancer controller, EBS CSI driver, Cluster Autoscaler, the chat
	// pods (rds-db:connect) and the database bootstrap (the master secret).
	if irsa != 5 {
		t.Errorf("%d IRSA roles, want 5", irsa)
	}
}

func TestAlarmsCoverTheManagedPartsAndNotifyTheTopic(t *testing.T) {
	s := mustRun(t, awsConfig())
	metrics := map[string]int{}
	for _, a := range s.all("cloudwatch/metricAlarm:MetricAlarm") {
		metrics[a["namespace"].(string)+"/"+a["metricName"].(string)]++
		if get(a, "alarmActions.0") != testAlarmTopicARN {
			t.Errorf("alarm %v notifies %v, want the configured topic", a["metricName"], a["alarmActions"])
		}
	}
	for _, m := range []string{
		"AWS/ApplicationELB/HTTPCode_ELB_5XX_Count", "AWS/ApplicationELB/UnHealthyHostCount",
		"AWS/ElastiCache/EngineCPUUtilization", "AWS/ElastiCache/DatabaseMemoryUsagePercentage", "AWS/ElastiCache/Evictions",
		"AWS/RDS/CPUUtilization", "AWS/RDS/FreeStorageSpace", "AWS/RDS/DatabaseConnections",
	} {
		if metrics[m] == 0 {
			t.Errorf("no alarm on %s", m)
		}
	}
	if metrics["AWS/ElastiCache/Evictions"] != 3 {
		t.Errorf("eviction alarms on %d cache nodes, want all 3", metrics["AWS/ElastiCache/Evictions"])
	}
}

func TestProdConfigIsRefusedWithoutItsARNs(t *testing.T) {
	c := awsConfig()
	delete(c, "switchboard:certificateArn")
	if _, err := run(c); err == nil || !strings.Contains(err.Error(), "switchboard:certificateArn") {
		t.Errorf("err %v: want certificateArn named", err)
	}
}

// stackFileConfig is Pulumi.<stack>.yaml with the test secrets and, for
// the AWS stacks, the settings a user sets before the first `pulumi up`.
func stackFileConfig(t *testing.T, stack string) map[string]string {
	cfg := stackFile(t, stack)
	cfg["switchboard:jwtSecret"] = testJWTSecret
	cfg["switchboard:databasePassword"] = testDBPass
	if cfg["switchboard:target"] == "aws" {
		cfg["switchboard:apiAllowedCidrs"] = testAPICIDRs
		// What the stack files leave to each user (TestStackFilesNameWhatTheUserMustSet).
		cfg["switchboard:certificateArn"] = testCertificateARN
		cfg["switchboard:alarmTopicArn"] = testAlarmTopicARN
		cfg["switchboard:alertReceivers"] = testAlertReceivers
	}
	return cfg
}

// awsStacks are the AWS stack files run under the stack names a user or
// the e2e may give them: the file's own, the e2e's (staging-test-<unix
// seconds>), one past 60 characters, and one with characters AWS names
// refuse.
func awsStacks(t *testing.T, f func(t *testing.T, s *stack)) {
	for _, file := range []string{"prod", "staging"} {
		for _, name := range []string{
			file, file + "-test-1764547200",
			file + "-test-1764547200-a-much-longer-name-for-a-branch-preview-stack-42",
			"Team_EU." + file,
		} {
			t.Run(file+"/"+name, func(t *testing.T) {
				s := &stack{name: name}
				if err := s.run(stackFileConfig(t, file)); err != nil {
					t.Fatalf("program: %v", err)
				}
				f(t, s)
			})
		}
	}
}

// ELBv2's rules for an HTTP health check
// (https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateTargetGroup.html):
// interval 5-300 s, timeout 2-120 s and less than the interval, thresholds
// 2-10. The controller's default timeout (5 s) equals a 5 s interval, and
// AWS refuses the target group.
func TestALBHealthCheckFitsTheELBv2Rules(t *testing.T) {
	awsStacks(t, func(t *testing.T, s *stack) {
		an, _ := ingress(t, s)
		n := func(key string) int {
			v, err := strconv.Atoi(fmt.Sprint(an["alb.ingress.kubernetes.io/"+key]))
			if err != nil {
				t.Errorf("%s %v: want it set, an integer", key, an["alb.ingress.kubernetes.io/"+key])
			}
			return v
		}
		interval, timeout := n("healthcheck-interval-seconds"), n("healthcheck-timeout-seconds")
		healthy, unhealthy := n("healthy-threshold-count"), n("unhealthy-threshold-count")
		if interval < 5 || interval > 300 || timeout < 2 || timeout > 120 || timeout >= interval {
			t.Errorf("health check every %d s, timeout %d s: want 5-300 s, 2-120 s, timeout below interval", interval, timeout)
		}
		if healthy < 2 || healthy > 10 || unhealthy < 2 || unhealthy > 10 {
			t.Errorf("thresholds %d/%d: want 2-10", healthy, unhealthy)
		}
	})
}

// Every AWS name the stack sets fits its documented limit and charset (the
// rules and their documents are infra/awsname's), whatever the stack's name.
func TestEveryAWSNameFitsItsLimit(t *testing.T) {
	awsStacks(t, func(t *testing.T, s *stack) {
		checked := 0
		check := func(rule awsname.Rule, v any) {
			name, _ := v.(string)
			if err := rule.Check(name); err != nil {
				t.Error(err)
			}
			checked++
		}
		an, _ := ingress(t, s)
		check(awsname.LoadBalancer, an["alb.ingress.kubernetes.io/load-balancer-name"])
		check(awsname.Cluster, s0(t, s, "eks/cluster:Cluster")["name"])
		check(awsname.ReplicationGroup, s0(t, s, "elasticache/replicationGroup:ReplicationGroup")["replicationGroupId"])
		db := s0(t, s, "rds/instance:Instance")
		check(awsname.DBInstance, db["identifier"])
		check(awsname.DBSnapshot, db["finalSnapshotIdentifier"])
		for _, r := range s.all("iam/role:Role") {
			check(awsname.RolePrefix, r["namePrefix"])
		}
		for _, g := range s.all("ec2/securityGroup:SecurityGroup") {
			check(awsname.SecurityGroupPrefix, g["namePrefix"])
		}
		if checked < 10 {
			t.Errorf("checked %d names; the stack sets more", checked)
		}
	})
}

// reaches reports whether from is ordered after to: through its
// dependencies or its parents', which the engine creates before and
// deletes after it.
func (s *stack) reaches(from, to resource.URN) bool {
	byURN := map[resource.URN]declared{}
	for _, r := range s.resources {
		byURN[r.URN] = r
	}
	seen := map[resource.URN]bool{}
	next := []resource.URN{from}
	for len(next) > 0 {
		u := next[0]
		next = next[1:]
		if u == to && u != from {
			return true
		}
		if seen[u] {
			continue
		}
		seen[u] = true
		r := byURN[u]
		next = append(next, r.Deps...)
		if r.Parent != "" {
			next = append(next, r.Parent)
		}
	}
	return false
}

// find returns the resources of kind whose inputs satisfy match.
func (s *stack) find(kind string, match func(map[string]any) bool) []declared {
	var out []declared
	for _, r := range s.of(kind) {
		if match(plain(resource.NewObjectProperty(r.Inputs)).(map[string]any)) {
			out = append(out, r)
		}
	}
	return out
}

// The edges Pulumi needs told: what acts through an IAM role waits for
// the role's policies (and on destroy goes first); the load balancer
// controller waits for its permissions, and everything the stack creates in
// the cluster waits for the controller's webhooks, so that on destroy the
// controller deletes the ALB before it, or its permissions, go (else the
// ALB and its security group stay and the VPC's deletion hangs). AWS Load
// Balancer Controller docs, "Uninstall": delete the Ingresses before the
// controller.
func TestOrderingEdges(t *testing.T) {
	s := mustRun(t, awsConfig())
	attached := func(policy string) []declared {
		a := s.find("iam/rolePolicyAttachment:RolePolicyAttachment", func(m map[string]any) bool {
			return strings.HasSuffix(fmt.Sprint(m["policyArn"]), "/"+policy)
		})
		if len(a) != 1 {
			t.Fatalf("%d attachments of %s, want 1", len(a), policy)
		}
		return a
	}
	edge := func(from declared, to []declared, why string) {
		for _, d := range to {
			if !s.reaches(from.URN, d.URN) {
				t.Errorf("%s %s does not depend on %s %s: %s", from.Type, from.Name, d.Type, d.Name, why)
			}
		}
	}
	cluster := s.of("eks/cluster:Cluster")[0]
	edge(cluster, attached("AmazonEKSClusterPolicy"), "EKS needs its role's policy to create the cluster, and to delete it")
	nodes := s.of("eks/nodeGroup:NodeGroup")[0]
	for _, p := range []string{"AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryReadOnly", "AmazonEKS_CNI_Policy"} {
		edge(nodes, attached(p), "nodes without it never join")
	}
	ebs := s.find("eks/addon:Addon", func(m map[string]any) bool { return m["addonName"] == "aws-ebs-csi-driver" })[0]
	edge(ebs, attached("AmazonEBSCSIDriverPolicy"), "the driver acts through its role")

	releases := s.find("helm.sh/v3:Release", func(m map[string]any) bool { return m["name"] == "aws-load-balancer-controller" })
	if len(releases) != 1 {
		t.Fatalf("%d load balancer controller releases, want 1", len(releases))
	}
	controller := releases[0]
	if skip, _ := plain(controller.Inputs["skipAwait"]).(bool); skip {
		t.Error("the controller's release skips await: it would be ready before its pods are")
	}
	policy := s.of("iam/rolePolicy:RolePolicy")
	role := s.find("iam/role:Role", func(m map[string]any) bool {
		return strings.Contains(fmt.Sprint(m["assumeRolePolicy"]), "kube-system:aws-load-balancer-controller")
	})
	for _, p := range policy {
		if strings.Contains(p.Inputs["policy"].String(), iampolicy.ClusterTag) {
			edge(controller, []declared{p}, "the controller must keep its permissions until it has deleted the ALB")
		}
	}
	edge(controller, role, "the controller acts through its IRSA role")
	k8s := 0
	for _, r := range s.resources {
		if !strings.HasPrefix(r.Type, "kubernetes:") || r.Type == "kubernetes:core/v1:Namespace" || r.URN == controller.URN {
			continue
		}
		k8s++
		edge(r, []declared{controller}, "the controller's webhooks refuse Services and pods until it is ready")
	}
	if k8s < 10 {
		t.Errorf("%d Kubernetes resources checked; the stack creates more", k8s)
	}
}

// The add-ons follow eksVersion: one row of infra/eksaddon per EKS minor,
// kube-proxy of the cluster's minor ("Manage kube-proxy in Amazon EKS
// clusters"), conflicts with the self-managed add-ons EKS bootstraps
// resolved on create and update ("Create an Amazon EKS add-on").
func TestEKSAddonsFollowEKSVersion(t *testing.T) {
	onDay(t, calendarRead)
	for _, minor := range eksaddon.Minors() {
		t.Run(minor, func(t *testing.T) {
			s := mustRun(t, awsConfig("eksVersion", minor))
			if v := s0(t, s, "eks/cluster:Cluster")["version"]; v != minor {
				t.Errorf("cluster version %v, want %s", v, minor)
			}
			want, _ := eksaddon.For(minor)
			got := map[string]any{}
			for _, a := range s.all("eks/addon:Addon") {
				got[a["addonName"].(string)] = a["addonVersion"]
				if a["resolveConflictsOnCreate"] != "OVERWRITE" || a["resolveConflictsOnUpdate"] != "OVERWRITE" {
					t.Errorf("add-on %v resolves conflicts %v on create, %v on update: want OVERWRITE", a["addonName"], a["resolveConflictsOnCreate"], a["resolveConflictsOnUpdate"])
				}
			}
			if len(got) != len(want) {
				t.Errorf("add-ons %v, want %v", got, want)
			}
			for name, v := range want {
				if got[name] != v {
					t.Errorf("add-on %s %v, want the table's %s", name, got[name], v)
				}
			}
			if kp, _ := got["kube-proxy"].(string); !strings.HasPrefix(kp, "v"+minor+".") {
				t.Errorf("kube-proxy %s on EKS %s", kp, minor)
			}
		})
	}
	for _, tc := range []struct{ key, overrides, want string }{
		{"switchboard:eksVersion", "eksVersion=1.30", "1.32, 1.33, 1.34, 1.35"},
		{"switchboard:eksVersion", "eksVersion=1.36", "1.32, 1.33, 1.34, 1.35"},
		{"switchboard:addon-kube-proxy", "addon-kube-proxy=v1.32.9-eksbuild.2", "v1.35.x"},
		{"switchboard:addon-coredns", "addon-coredns=latest", "vX.Y.Z-eksbuild.N"},
	} {
		k, v, _ := strings.Cut(tc.overrides, "=")
		if _, err := run(awsConfig(k, v)); err == nil || !strings.Contains(err.Error(), tc.key) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %s refused naming %s", tc.overrides, err, tc.key, tc.want)
		}
	}
}

// calendarRead is the day infra/eksaddon's calendar was read from the EKS
// page; the tests that try every minor run on it.
const calendarRead = "2026-12-06"

// onDay makes the stack's EKS support check run on day for the test.
func onDay(t *testing.T, day string) {
	d, err := time.Parse(time.DateOnly, day)
	if err != nil {
		t.Fatal(err)
	}
	old := stackconfig.Today
	stackconfig.Today = func() time.Time { return d.Add(12 * time.Hour) }
	t.Cleanup(func() { stackconfig.Today = old })
}

// The EKS version follows the Amazon EKS release calendar (Amazon EKS User
// Guide, "Understand the Kubernetes version lifecycle on EKS": 14 months of
// standard support from the EKS release, then 12 of extended support at
// $0.60 instead of $0.10 per cluster hour, then an automatic upgrade). The
// default, and the stack files', is the newest minor in standard support:
// 1.35 (released 2026-01-27, standard support until 2027-03-27). A minor
// past its end of extended support is refused with its date; one in
// extended support is accepted (with a warning); every minor of the table
// has its Cluster Autoscaler of the same minor.
func TestEKSVersionIsTheNewestInStandardSupport(t *testing.T) {
	onDay(t, calendarRead)
	newest := eksaddon.NewestStandard(stackconfig.Today())
	if d := stackconfig.Defaults().AWS.EKSVersion; d != newest {
		t.Errorf("default eksVersion %s, want %s, the newest in standard support on %s", d, newest, calendarRead)
	}
	for _, file := range []string{"prod", "staging"} {
		if v := stackFile(t, file)["switchboard:eksVersion"]; v != newest {
			t.Errorf("Pulumi.%s.yaml: eksVersion %s, want %s", file, v, newest)
		}
	}
	for _, tc := range []struct {
		minor, refused string // refused: the error names the end of extended support
	}{
		{"1.29", "2026-03-23"}, {"1.30", "2026-07-23"}, {"1.31", "2026-11-26"},
		{"1.32", ""}, {"1.33", ""}, {"1.34", ""}, {"1.35", ""},
	} {
		_, err := run(awsConfig("eksVersion", tc.minor))
		switch {
		case tc.refused == "" && err != nil:
			t.Errorf("EKS %s refused: %v", tc.minor, err)
		case tc.refused != "" && (err == nil || !strings.Contains(err.Error(), "switchboard:eksVersion") || !strings.Contains(err.Error(), tc.refused)):
			t.Errorf("EKS %s: err %v, want switchboard:eksVersion refused with its end of extended support, %s", tc.minor, err, tc.refused)
		}
	}
	for _, minor := range eksaddon.Minors() {
		if tag := autoscaling.AutoscalerImages[minor]; !strings.HasPrefix(tag, "v"+minor+".") {
			t.Errorf("EKS %s: Cluster Autoscaler %q, want v%s.x", minor, tag, minor)
		}
	}
	// Whatever the day the tests run, the default is not one EKS has
	// stopped supporting (from 2028-03-28, this fails: move to a newer minor).
	if _, err := eksaddon.Supported(stackconfig.Defaults().AWS.EKSVersion, time.Now()); err != nil {
		t.Errorf("the default eksVersion today: %v", err)
	}
}

// The controller's IAM policy follows its chart: the role policy is
// upstream's docs/install/iam_policy.json of the controller the chart
// installs (infra/iampolicy/lbcontroller, Apache-2.0), for the pinned
// chart and for another accepted one; a chart without its policy is
// refused by its key before anything is made (iampolicy's tests prove
// what the policies restrict).
func TestLBControllerPolicyFollowsItsChart(t *testing.T) {
	for _, chart := range []string{"", "1.12.0", "1.17.1"} {
		t.Run("chart="+chart, func(t *testing.T) {
			cfg := awsConfig()
			if chart != "" {
				cfg = awsConfig("lbControllerChartVersion", chart)
			}
			s := mustRun(t, cfg)
			pinned := fmt.Sprint(s.named(t, "helm.sh/v3:Release", "edge-controller")["version"])
			if chart == "" && pinned != stackconfig.Defaults().AWS.LBControllerChart || chart != "" && pinned != chart {
				t.Fatalf("chart %s installed, want %s", pinned, chart)
			}
			want, _, err := iampolicy.LBControllerPolicy(pinned)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.named(t, "iam/rolePolicy:RolePolicy", "edge-controller")["policy"]; got != want {
				t.Errorf("the controller's role policy is not upstream's for chart %s (%s):\n%v", pinned, iampolicy.LBCharts()[pinned].AppVersion, got)
			}
		})
	}
	for _, chart := range []string{"1.99.0", "3.5.0", "latest"} {
		_, err := run(awsConfig("lbControllerChartVersion", chart))
		if err == nil || !strings.Contains(err.Error(), "switchboard:lbControllerChartVersion") || !strings.Contains(err.Error(), "has no IAM policy") {
			t.Errorf("chart %s: err %v, want switchboard:lbControllerChartVersion refused: no IAM policy", chart, err)
		}
	}
	if _, ok := iampolicy.LBCharts()[stackconfig.Defaults().AWS.LBControllerChart]; !ok {
		t.Errorf("the default chart %s has no policy", stackconfig.Defaults().AWS.LBControllerChart)
	}
}

// `aws eks get-token` signs for the stack's region and, if the stack has
// one, its profile (AWS CLI reference, eks get-token).
func TestKubeconfigGetsATokenForTheStacksRegionAndProfile(t *testing.T) {
	for _, tc := range []struct {
		profile string
		want    string
	}{
		{"", "args: [eks, get-token, --cluster-name, switchboard-prod, --region, eu-west-1, --output, json]"},
		{"ops", "args: [eks, get-token, --cluster-name, switchboard-prod, --region, eu-west-1, --output, json, --profile, ops]"},
	} {
		cfg := awsConfig()
		if tc.profile != "" {
			cfg["aws:profile"] = tc.profile
		}
		s := mustRun(t, cfg)
		kc := s0(t, s, "providers:kubernetes")["kubeconfig"]
		if !strings.Contains(fmt.Sprint(kc), tc.want) {
			t.Errorf("profile %q: kubeconfig %v: want %s", tc.profile, kc, tc.want)
		}
	}
	c := awsConfig()
	delete(c, "aws:region")
	if _, err := run(c); err == nil || !strings.Contains(err.Error(), "aws:region") {
		t.Errorf("err %v: want aws:region required", err)
	}
}

// The public API endpoint admits only apiAllowedCidrs; the internet only
// when asked for in so many words. EKS: publicAccessCidrs, at most 40
// (Amazon EKS User Guide, "Cluster API server endpoint").
func TestPublicAPIEndpointIsRestricted(t *testing.T) {
	s := mustRun(t, awsConfig())
	got := get(s0(t, s, "eks/cluster:Cluster"), "vpcConfig.publicAccessCidrs")
	if fmt.Sprint(got) != "[198.51.100.0/24 203.0.113.7/32]" {
		t.Errorf("public access CIDRs %v, want %s", got, testAPICIDRs)
	}
	many := make([]string, 41)
	for i := range many {
		many[i] = fmt.Sprintf("198.51.100.%d/32", i)
	}
	for _, bad := range []string{"", "0.0.0.0/0", "10.0.0.1/8", "2001:db8::/32", "me", strings.Join(many, ",")} {
		if _, err := run(awsConfig("apiAllowedCidrs", bad)); err == nil || !strings.Contains(err.Error(), "switchboard:apiAllowedCidrs") {
			t.Errorf("apiAllowedCidrs %.40q: err %v, want it refused by key", bad, err)
		}
	}
	s = mustRun(t, awsConfig("apiAllowedCidrs", "0.0.0.0/0", "apiAllowAnywhere", "true"))
	if got := get(s0(t, s, "eks/cluster:Cluster"), "vpcConfig.publicAccessCidrs.0"); got != "0.0.0.0/0" {
		t.Errorf("with apiAllowAnywhere, public access CIDRs %v", got)
	}
}

// The Redis auth token is generated once: a second `pulumi up` on the same
// state draws another random password, and the replication group, its
// secret and REDIS_URL keep the first.
func TestRedisAuthTokenIsGeneratedOnce(t *testing.T) {
	s := mustRun(t, awsConfig())
	first := s0(t, s, "elasticache/replicationGroup:ReplicationGroup")["authToken"]
	if err := s.run(awsConfig()); err != nil {
		t.Fatalf("second run: %v", err)
	}
	if s.passwords != 2 {
		t.Fatalf("%d random passwords drawn in two runs, want 2: the test proves nothing", s.passwords)
	}
	if again := s0(t, s, "elasticache/replicationGroup:ReplicationGroup")["authToken"]; again != first || first != testRedisToken {
		t.Errorf("auth token %v, then %v: want the first run's, %s", first, again, testRedisToken)
	}
	if url, _ := get(s.one(t, "core/v1:Secret", "chat-env"), "stringData.REDIS_URL").(string); !strings.Contains(url, ":"+testRedisToken+"@") {
		t.Errorf("REDIS_URL %q on the second run: want the first token", url)
	}
}

// An ElastiCache failover promotes a replica that replicates asynchronously
// (https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/AutoFailover.html):
// every ack waits (Redis WAIT) until a replica holds the message.
func TestAcksWaitForAnElastiCacheReplica(t *testing.T) {
	for _, tc := range []struct {
		replicas, want string
	}{{"2", "1"}, {"1", "1"}} {
		t.Run("replicas="+tc.replicas, func(t *testing.T) {
			s := mustRun(t, awsConfig("redisReplicas", tc.replicas))
			env := envOf(get(s.one(t, "apps/v1:Deployment", "chat"), "spec.template.spec.containers.0"))
			if got, _ := env["REDIS_MIN_REPLICAS"].(string); got != tc.want {
				t.Errorf("REDIS_MIN_REPLICAS = %q with %s replicas, want %q", got, tc.replicas, tc.want)
			}
		})
	}
}

// cacheFamily is the ElastiCache parameter group family of an engine and
// version, as CreateCacheParameterGroup lists them
// (https://docs.aws.amazon.com/AmazonElastiCache/latest/APIReference/API_CreateCacheParameterGroup.html):
// redis2.6 to redis5.0, redis6.x, then one per major: redis7, valkey7, valkey8.
func cacheFamily(engine, version string) string {
	major, minor, _ := strings.Cut(version, ".")
	minor, _, _ = strings.Cut(minor, ".")
	n, _ := strconv.Atoi(major)
	switch {
	case engine == "valkey", engine == "redis" && n >= 7:
		return engine + major
	case engine == "redis" && n == 6:
		return "redis6.x"
	}
	return engine + major + "." + minor
}

// ElastiCache's parameter groups default maxmemory-policy to volatile-lru
// (https://docs.aws.amazon.com/AmazonElastiCache/latest/red-ug/ParameterGroups.Engine.html),
// which evicts the keys that have a TTL once memory is full, and every room
// key has one: a room's seq state and history would go key by key (issue
// 25). The replication group runs a parameter group of its engine's family
// (a group of another family is refused) with noeviction.
func TestElastiCacheNeverEvictsKeys(t *testing.T) {
	s := mustRun(t, awsConfig())
	rg := s.of("elasticache/replicationGroup:ReplicationGroup")
	groups := s.of("elasticache/parameterGroup:ParameterGroup")
	if len(rg) != 1 || len(groups) != 1 {
		t.Fatalf("%d replication groups and %d cache parameter groups, want 1 and 1", len(rg), len(groups))
	}
	r := plain(resource.NewObjectProperty(rg[0].Inputs)).(map[string]any)
	pg := plain(resource.NewObjectProperty(groups[0].Inputs)).(map[string]any)
	engine, _ := r["engine"].(string)
	version, _ := r["engineVersion"].(string)
	if want := cacheFamily(engine, version); pg["family"] != want {
		t.Errorf("parameter group family %v for %s %s: want %s", pg["family"], engine, version, want)
	}
	var policies []any
	for _, p := range pg["parameters"].([]any) {
		if p := p.(map[string]any); p["name"] == "maxmemory-policy" {
			policies = append(policies, p["value"])
		}
	}
	if len(policies) != 1 || policies[0] != "noeviction" {
		t.Errorf("maxmemory-policy %v: want noeviction, once", policies)
	}
	// The replication group takes the group's name (an output the provider
	// computes), so it depends on it.
	if !s.reaches(rg[0].URN, groups[0].URN) {
		t.Errorf("the replication group does not use the parameter group: it runs ElastiCache's default, volatile-lru")
	}
}
