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
	an, _ = ingress(t, mustRun(t, awsConfig("wafAclArn", "arn:aws:wafv2:mock")))
	if an["alb.ingress.kubernetes.io/wafv2-acl-arn"] != "arn:aws:wafv2:mock" {
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
			var d struct {
				Statement []struct {
					Effect           string
					Action, Resource []string
				}
			}
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
		if get(a, "alarmActions.0") != "arn:aws:sns:eu-west-1:123456789012:switchboard-alarms" {
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
