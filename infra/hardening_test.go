package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"gopkg.in/yaml.v3"

	"github.com/switchboard-dev/switchboard/blueprint"
	"github.com/switchboard-dev/switchboard/infra/edge"
	"github.com/switchboard-dev/switchboard/infra/eksaddon"
)

// albPattern is an ALB path pattern: case-sensitive, * matches 0 or more
// characters and ? exactly one, compared with the URL's path only
// (Elastic Load Balancing API Reference, PathPatternConditionConfig).
func albPattern(p string) *regexp.Regexp {
	q := regexp.QuoteMeta(p)
	q = strings.ReplaceAll(q, `\*`, `.*`)
	q = strings.ReplaceAll(q, `\?`, `.`)
	return regexp.MustCompile("^" + q + "$")
}

// listenerRule is one rule the controller makes of the Ingress's paths.
type listenerRule struct {
	patterns []string
	action   string // the backend service: an action's name, or a Service
}

// listenerRules are the rules the AWS Load Balancer Controller makes of an
// Ingress's spec.rules, in priority order (model_build_listener_rules.go):
// Exact paths first, then Prefix paths longest first, then the others in
// their order; a Prefix path /p becomes the patterns /p and /p/*, an Exact
// one itself. The defaultBackend is not a rule: it is the listener's
// default action, evaluated after every rule.
func listenerRules(t *testing.T, ing map[string]any) []listenerRule {
	var exact, prefix, other []listenerRule
	for _, r := range asSlice(get(ing, "spec.rules")) {
		for _, p := range asSlice(get(r, "http.paths")) {
			path, _ := get(p, "path").(string)
			rule := listenerRule{action: fmt.Sprint(get(p, "backend.service.name"))}
			switch get(p, "pathType") {
			case "Exact":
				rule.patterns = []string{path}
				exact = append(exact, rule)
			case "Prefix":
				trimmed := strings.TrimSuffix(path, "/")
				rule.patterns = []string{trimmed, trimmed + "/*"}
				prefix = append(prefix, rule)
			default:
				rule.patterns = []string{path}
				other = append(other, rule)
			}
			if get(p, "backend.service.port.name") != "use-annotation" && rule.action == edge.BlockedAction {
				t.Errorf("path %s: the action's backend must name port use-annotation, got %v", path, get(p, "backend.service.port"))
			}
		}
	}
	slices.SortStableFunc(prefix, func(a, b listenerRule) int { return len(b.patterns[0]) - len(a.patterns[0]) })
	return append(append(exact, prefix...), other...)
}

// route is what the ALB's HTTPS listener does with a path: the first rule
// whose pattern matches, else the default action.
func route(rules []listenerRule, path, defaultAction string) string {
	for _, r := range rules {
		for _, p := range r.patterns {
			if albPattern(p).MatchString(path) {
				return r.action
			}
		}
	}
	return defaultAction
}

// /metrics, /ready and /debug answer 404 from the ALB itself: a listener
// rule with a fixed-response action for the patterns /metrics, /metrics/*,
// /ready, /ready/*, /debug and /debug/*, numbered before the forward to the
// chat pods, which is the listener's default action and so evaluated last
// (Elastic Load Balancing, "Listener rules for your Application Load
// Balancer"). The target group's health check still asks the pods for
// /ready: the ALB sends health checks to each target directly, not through
// its listeners ("Health checks for Application Load Balancer target
// groups").
func TestALBAnswers404ForMetricsReadyAndDebug(t *testing.T) {
	s := mustRun(t, awsConfig())
	ing := s.one(t, "networking.k8s.io/v1:Ingress", "chat")
	an, _ := ingress(t, s)

	var action struct {
		Type                string
		FixedResponseConfig struct{ ContentType, StatusCode, MessageBody string }
	}
	raw, _ := an["alb.ingress.kubernetes.io/actions."+edge.BlockedAction].(string)
	if err := json.Unmarshal([]byte(raw), &action); err != nil {
		t.Fatalf("action %s: %q: %v", edge.BlockedAction, raw, err)
	}
	if action.Type != "fixed-response" || action.FixedResponseConfig.StatusCode != "404" {
		t.Errorf("action %s %+v: want a fixed response 404", edge.BlockedAction, action)
	}

	rules := listenerRules(t, ing)
	var patterns []string
	for _, r := range rules {
		if r.action != edge.BlockedAction {
			t.Errorf("rule %v forwards to %s: want every rule of the Ingress to answer 404 (the forward is the default action)", r.patterns, r.action)
		}
		patterns = append(patterns, r.patterns...)
	}
	for _, want := range []string{"/metrics", "/metrics/*", "/ready", "/debug/*"} {
		if !slices.Contains(patterns, want) {
			t.Errorf("listener rule patterns %v lack %s", patterns, want)
		}
	}
	forward := fmt.Sprint(get(ing, "spec.defaultBackend.service.name"))
	if forward != "chat" || get(ing, "spec.defaultBackend.service.port.number") != float64(8080) {
		t.Errorf("default action forwards to %v, want the chat Service's port 8080", get(ing, "spec.defaultBackend"))
	}
	for path, want := range map[string]string{
		"/metrics": edge.BlockedAction, "/metrics/": edge.BlockedAction, "/metrics/x": edge.BlockedAction,
		"/ready": edge.BlockedAction, "/ready/": edge.BlockedAction,
		"/debug/pprof/": edge.BlockedAction, "/debug/pprof/heap": edge.BlockedAction, "/debug": edge.BlockedAction,
		"/": forward, "/ws": forward, "/health": forward, "/rooms/lobby/messages": forward, "/index.html": forward,
		"/readyz": forward, "/metricsfoo": forward,
	} {
		if got := route(rules, path, forward); got != want {
			t.Errorf("GET %s through the ALB goes to %s, want %s", path, got, want)
		}
	}
	if an["alb.ingress.kubernetes.io/healthcheck-path"] != "/ready" {
		t.Errorf("health check path %v: want /ready, which the targets answer directly", an["alb.ingress.kubernetes.io/healthcheck-path"])
	}
	if an["alb.ingress.kubernetes.io/scheme"] != "internet-facing" {
		t.Errorf("scheme %v: the NetworkPolicies and TRUSTED_PROXIES expect an internet-facing ALB in the public subnets", an["alb.ingress.kubernetes.io/scheme"])
	}
}

// Every node group has a launch template with IMDSv2 only and a response
// hop limit of 1: a pod off the host network is one hop further than the
// node, so the token response never reaches it and it cannot read the
// node's instance profile credentials (Amazon EC2 User Guide, "Use the
// Instance Metadata Service to access instance metadata"; Amazon EKS Best
// Practices Guide, "Restrict access to the instance profile assigned to
// the worker node").
func TestEveryNodeGroupKeepsPodsFromTheInstanceMetadata(t *testing.T) {
	awsStacks(t, func(t *testing.T, s *stack) {
		templates := map[string]map[string]any{}
		for _, r := range s.of("ec2/launchTemplate:LaunchTemplate") {
			templates[r.Name+"-id"] = plain(resource.NewObjectProperty(r.Inputs)).(map[string]any) // the mocks' IDs
		}
		groups := s.all("eks/nodeGroup:NodeGroup")
		if len(groups) == 0 {
			t.Fatal("no node group")
		}
		for _, g := range groups {
			id, _ := get(g, "launchTemplate.id").(string)
			lt, ok := templates[id]
			if !ok || get(g, "launchTemplate.version") == nil {
				t.Errorf("node group %v: launch template %v, want one of the stack's, at a version", g["clusterName"], get(g, "launchTemplate"))
				continue
			}
			for path, want := range map[string]any{
				"metadataOptions.httpEndpoint":            "enabled",
				"metadataOptions.httpTokens":              "required",
				"metadataOptions.httpPutResponseHopLimit": float64(1),
			} {
				if got := get(lt, path); got != want {
					t.Errorf("launch template %s %s = %v, want %v", id, path, got, want)
				}
			}
			if get(lt, "vpcSecurityGroupIds") != nil || get(lt, "iamInstanceProfile") != nil {
				t.Errorf("launch template %s sets security groups or an instance profile: EKS would no longer give the nodes the cluster security group and node role", id)
			}
		}
		for _, kind := range []string{"autoscaling/group:Group", "ec2/instance:Instance", "eks/fargateProfile:FargateProfile"} {
			if n := len(s.of(kind)); n != 0 {
				t.Errorf("%d %s: every node must come from a node group with the launch template", n, kind)
			}
		}
	})
}

// With pods cut off from the instance metadata, whatever calls AWS from a
// pod needs its own credentials (IRSA) and its region and VPC as settings:
// the load balancer controller reads them from IMDS otherwise (AWS Load
// Balancer Controller installation guide, IMDSv2: "manually specify the
// AWS region and the VPC"), the Cluster Autoscaler its region; the chat
// pods and the bootstrap Job run as service accounts bound to roles.
func TestPodsThatCallAWSDoNotNeedTheInstanceMetadata(t *testing.T) {
	s := mustRun(t, awsConfig())
	lbc := get(s.release("aws-load-balancer-controller"), "values")
	if get(lbc, "region") != "eu-west-1" || get(lbc, "vpcId") == nil {
		t.Errorf("load balancer controller region %v, vpcId %v: want both set", get(lbc, "region"), get(lbc, "vpcId"))
	}
	if get(lbc, "serviceAccount.annotations") == nil {
		t.Error("load balancer controller: no IRSA role on its service account")
	}
	if ca := get(s.release("cluster-autoscaler"), "values"); get(ca, "awsRegion") != "eu-west-1" || get(ca, "rbac.serviceAccount.annotations") == nil {
		t.Errorf("cluster autoscaler region %v, annotations %v: want the region and an IRSA role", get(ca, "awsRegion"), get(ca, "rbac.serviceAccount.annotations"))
	}
	accounts := map[string]bool{}
	for _, sa := range s.all("core/v1:ServiceAccount") {
		m, _ := get(sa, "metadata.annotations").(map[string]any)
		accounts[fmt.Sprint(get(sa, "metadata.name"))] = m["eks.amazonaws.com/role-arn"] != nil
	}
	for _, w := range []map[string]any{s.one(t, "apps/v1:Deployment", "chat"), s0(t, s, "batch/v1:Job")} {
		sa := fmt.Sprint(get(w, "spec.template.spec.serviceAccountName"))
		if !accounts[sa] {
			t.Errorf("%v runs as %s, which has no IRSA role", get(w, "metadata.labels"), sa)
		}
	}
}

// The VPC CNI enforces NetworkPolicies only with its network policy agent
// on: VPC CNI 1.14 or later on EKS 1.25 or later, and the add-on's
// configuration enableNetworkPolicy "true" (Amazon EKS User Guide,
// "Restrict Pod network traffic with Kubernetes network policies").
func TestVPCCNIEnforcesNetworkPolicies(t *testing.T) {
	awsStacks(t, func(t *testing.T, s *stack) {
		var cni map[string]any
		for _, a := range s.all("eks/addon:Addon") {
			if a["addonName"] == "vpc-cni" {
				cni = a
			}
		}
		if cni == nil {
			t.Fatal("no vpc-cni add-on: EKS's self-managed one runs without the network policy agent")
		}
		var conf map[string]any
		if err := json.Unmarshal([]byte(fmt.Sprint(cni["configurationValues"])), &conf); err != nil || conf["enableNetworkPolicy"] != "true" {
			t.Errorf("vpc-cni configuration %v (%v): want enableNetworkPolicy \"true\"", cni["configurationValues"], err)
		}
		version := fmt.Sprint(s0(t, s, "eks/cluster:Cluster")["version"])
		if err := eksaddon.Check(version, "vpc-cni", fmt.Sprint(cni["addonVersion"])); err != nil {
			t.Error(err)
		}
		var minor int
		if _, err := fmt.Sscanf(version, "1.%d", &minor); err != nil || minor < eksaddon.MinEKSMinor {
			t.Errorf("EKS %s: network policies need 1.%d or later", version, eksaddon.MinEKSMinor)
		}
	})
	if _, err := run(awsConfig("addon-vpc-cni", "v1.13.4-eksbuild.1")); err == nil || !strings.Contains(err.Error(), "switchboard:addon-vpc-cni") {
		t.Errorf("VPC CNI 1.13: %v, want addon-vpc-cni refused", err)
	}
}

// TRUSTED_PROXIES are the addresses the load balancer connects to the chat
// pods from, and nothing wider: on kind NGINX's pods (the pod subnet of
// kind/cluster.yaml, kind's default 10.244.0.0/16 when unset: kind's
// configuration guide, "Pod Subnet"); on AWS the ALB's subnets, the public
// ones the controller places an internet-facing ALB in (subnets tagged
// kubernetes.io/role/elb: the controller's "Subnet auto-discovery"),
// which are also all the NetworkPolicy admits to the chat pods.
func TestTrustedProxiesAreTheLoadBalancersAddresses(t *testing.T) {
	b, err := os.ReadFile("kind/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var kc struct {
		Networking struct {
			PodSubnet string `yaml:"podSubnet"`
		}
	}
	if err := yaml.Unmarshal(b, &kc); err != nil {
		t.Fatal(err)
	}
	if kc.Networking.PodSubnet != "" && kc.Networking.PodSubnet != blueprint.KindPodSubnet {
		t.Errorf("kind/cluster.yaml podSubnet %s, but the stack trusts %s", kc.Networking.PodSubnet, blueprint.KindPodSubnet)
	}
	if got := env(chatContainer(t, mustRun(t, kindConfig())))["TRUSTED_PROXIES"]; got != blueprint.KindPodSubnet {
		t.Errorf("kind TRUSTED_PROXIES %v, want the pod subnet %s", got, blueprint.KindPodSubnet)
	}

	s := mustRun(t, awsConfig())
	var elb []string
	for _, sn := range s.all("ec2/subnet:Subnet") {
		if m, _ := sn["tags"].(map[string]any); m["kubernetes.io/role/elb"] == "1" {
			elb = append(elb, fmt.Sprint(sn["cidrBlock"]))
		}
	}
	slices.Sort(elb)
	trusted := strings.Split(fmt.Sprint(env(chatContainer(t, s))["TRUSTED_PROXIES"]), ",")
	slices.Sort(trusted)
	if len(elb) != 3 || !slices.Equal(trusted, elb) {
		t.Errorf("AWS TRUSTED_PROXIES %v, want the ALB's subnets %v", trusted, elb)
	}
	var admitted []string
	for _, r := range asSlice(get(s.one(t, "networking.k8s.io/v1:NetworkPolicy", "chat"), "spec.ingress")) {
		for _, p := range asSlice(get(r, "from")) {
			if c, ok := get(p, "ipBlock.cidr").(string); ok {
				admitted = append(admitted, c)
			}
		}
	}
	slices.Sort(admitted)
	if !slices.Equal(admitted, elb) {
		t.Errorf("chat pods admit %v by address, want the ALB's subnets %v", admitted, elb)
	}
	vpc := netip.MustParsePrefix(fmt.Sprint(s0(t, s, "ec2/vpc:Vpc")["cidrBlock"]))
	for _, c := range elb {
		if p := netip.MustParsePrefix(c); !vpc.Contains(p.Addr()) || p.Bits() <= vpc.Bits() {
			t.Errorf("ALB subnet %s is not inside the VPC %s", c, vpc)
		}
	}
}
