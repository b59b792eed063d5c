package main

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/switchboard-dev/switchboard/infra/data"
	"github.com/switchboard-dev/switchboard/infra/netpolicy"
)

// The NetworkPolicies as Kubernetes reads them ("Network Policies"): a pod
// selected by some policy of a type (Ingress, Egress) is isolated for it,
// and a connection is allowed when the source's egress and the
// destination's ingress both allow it; a rule allows a peer that matches
// one of its from/to entries (none: every peer) on one of its ports (none:
// every port); a podSelector without a namespaceSelector means the
// policy's namespace; an ipBlock matches addresses. Traffic from the
// pod's own node (the kubelet's probes) is not subject to the policies
// ("What you can't do with network policies"), so it is not modelled.

// endpoint is a pod (namespace set) or an address outside the cluster.
type endpoint struct {
	name   string
	ns     string
	labels map[string]string
	ip     string
}

func labelsOf(v any) map[string]string {
	out := map[string]string{}
	m, _ := v.(map[string]any)
	for k, x := range m {
		out[k] = fmt.Sprint(x)
	}
	return out
}

// selects is a label selector with matchLabels only (an empty one selects
// everything); anything else fails the test's reading.
func selects(t *testing.T, sel any, labels map[string]string) bool {
	m, _ := sel.(map[string]any)
	for k := range m {
		if k != "matchLabels" {
			t.Fatalf("selector %v: the evaluator reads matchLabels only", sel)
		}
	}
	for k, v := range labelsOf(m["matchLabels"]) {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func peerMatches(t *testing.T, peer map[string]any, policyNS string, e endpoint) bool {
	if b, ok := peer["ipBlock"].(map[string]any); ok {
		addr := netip.MustParseAddr(e.ip)
		if !netip.MustParsePrefix(b["cidr"].(string)).Contains(addr) {
			return false
		}
		for _, x := range asSlice(b["except"]) {
			if netip.MustParsePrefix(x.(string)).Contains(addr) {
				return false
			}
		}
		return true
	}
	if e.ns == "" {
		return false // selectors pick pods
	}
	if nsSel, ok := peer["namespaceSelector"]; ok {
		if !selects(t, nsSel, map[string]string{"kubernetes.io/metadata.name": e.ns}) {
			return false
		}
	} else if e.ns != policyNS {
		return false
	}
	if podSel, ok := peer["podSelector"]; ok {
		return selects(t, podSel, e.labels)
	}
	return true
}

func asSlice(v any) []any { s, _ := v.([]any); return s }

func portMatches(ports []any, port int, proto string) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		p := p.(map[string]any)
		pp, _ := p["protocol"].(string)
		if pp == "" {
			pp = "TCP"
		}
		if pp == proto && p["port"] == float64(port) {
			return true
		}
	}
	return false
}

// side says whether the policies let e send (egress, peer is the other
// end) or receive (ingress) the connection.
func side(t *testing.T, policies []map[string]any, e, peer endpoint, kind, field, peersKey string, port int, proto string) bool {
	if e.ns == "" {
		return true // outside the cluster: no policy applies
	}
	isolated := false
	for _, np := range policies {
		ns, _ := get(np, "metadata.namespace").(string)
		if ns != e.ns || !selects(t, get(np, "spec.podSelector"), e.labels) ||
			!slices.Contains(asSlice(get(np, "spec.policyTypes")), any(kind)) {
			continue
		}
		isolated = true
		for _, r := range asSlice(get(np, "spec."+field)) {
			r := r.(map[string]any)
			if !portMatches(asSlice(r["ports"]), port, proto) {
				continue
			}
			peers := asSlice(r[peersKey])
			if len(peers) == 0 {
				return true
			}
			for _, p := range peers {
				if peerMatches(t, p.(map[string]any), ns, peer) {
					return true
				}
			}
		}
	}
	return !isolated
}

func allowed(t *testing.T, policies []map[string]any, from, to endpoint, port int, proto string) bool {
	return side(t, policies, from, to, "Egress", "egress", "to", port, proto) &&
		side(t, policies, to, from, "Ingress", "ingress", "from", port, proto)
}

// podTemplates are the labels of every pod template the stack declares in
// the app namespace: Deployments, StatefulSets and Jobs.
func podTemplates(s *stack) map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, kind := range []string{"apps/v1:Deployment", "apps/v1:StatefulSet", "batch/v1:Job"} {
		for _, w := range s.all(kind) {
			if get(w, "metadata.namespace") == "kube-system" {
				continue // a cluster add-on (prometheus-adapter), outside the app's policies
			}
			labels := labelsOf(get(w, "spec.template.metadata.labels"))
			out[labels["app.kubernetes.io/name"]] = labels
		}
	}
	return out
}

// In the app namespace one policy selects every pod and allows nothing,
// for ingress and egress; every pod the stack runs there is selected by
// an allow policy too, whose every rule names its ports, and its peers
// unless it is the edge's, which clients reach from anywhere.
func TestNetworkPoliciesDenyByDefaultOnBothTargets(t *testing.T) {
	for _, tc := range []struct {
		name   string
		config map[string]string
		pods   []string
	}{
		{"kind", kindConfig(), []string{"chat", "edge", "redis", "postgres"}},
		{"kind, redisMode cluster", kindConfig("redisMode", "cluster"), []string{"chat", "edge", "redis", "postgres", data.ClusterSetup}},
		{"aws", awsConfig(), []string{"chat", "db-bootstrap"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustRun(t, tc.config)
			policies := s.all("networking.k8s.io/v1:NetworkPolicy")
			deny := 0
			selected := map[string]bool{}
			templates := podTemplates(s)
			for _, np := range policies {
				if ns := get(np, "metadata.namespace"); ns != "switchboard" {
					t.Errorf("policy %v in namespace %v, want the app's", get(np, "metadata.name"), ns)
				}
				types := asSlice(get(np, "spec.policyTypes"))
				if !slices.Contains(types, any("Ingress")) || !slices.Contains(types, any("Egress")) {
					t.Errorf("policy %v types %v: want Ingress and Egress", get(np, "metadata.name"), types)
				}
				sel, _ := get(np, "spec.podSelector").(map[string]any)
				if len(sel) == 0 {
					deny++
					if get(np, "metadata.name") != netpolicy.DefaultDeny || get(np, "spec.ingress") != nil || get(np, "spec.egress") != nil {
						t.Errorf("policy %v selects every pod and allows %v / %v: want the default deny, allowing nothing", get(np, "metadata.name"), get(np, "spec.ingress"), get(np, "spec.egress"))
					}
					continue
				}
				for name, labels := range templates {
					if selects(t, sel, labels) {
						selected[name] = true
					}
				}
				for _, field := range []string{"ingress", "egress"} {
					for _, r := range asSlice(get(np, "spec."+field)) {
						r := r.(map[string]any)
						if len(asSlice(r["ports"])) == 0 {
							t.Errorf("policy %v: an %s rule with no ports: %v", get(np, "metadata.name"), field, r)
						}
						peers := asSlice(r["from"]) // ingress
						if field == "egress" {
							peers = asSlice(r["to"])
						}
						if len(peers) == 0 && !(get(np, "metadata.name") == "edge" && field == "ingress") {
							t.Errorf("policy %v: an %s rule open to every peer: %v", get(np, "metadata.name"), field, r)
						}
					}
				}
			}
			if deny != 1 {
				t.Errorf("%d policies select every pod, want one default deny", deny)
			}
			var names []string
			for name := range templates {
				names = append(names, name)
				if !selected[name] {
					t.Errorf("the %s pods have no allow policy: the default deny cuts them off", name)
				}
			}
			slices.Sort(names)
			want := slices.Clone(tc.pods)
			slices.Sort(want)
			if !slices.Equal(names, want) {
				t.Errorf("pods in the namespace %v, want %v: a new pod needs its flows in infra/netpolicy", names, want)
			}
		})
	}
}

// flow is a connection the test tries.
type flow struct {
	from, to string
	port     int
	proto    string
	want     bool
}

func checkFlows(t *testing.T, policies []map[string]any, eps map[string]endpoint, flows []flow) {
	for _, f := range flows {
		from, ok1 := eps[f.from]
		to, ok2 := eps[f.to]
		if !ok1 || !ok2 {
			t.Fatalf("no endpoint %s or %s", f.from, f.to)
		}
		if got := allowed(t, policies, from, to, f.port, f.proto); got != f.want {
			verb := map[bool]string{true: "allowed", false: "denied"}
			t.Errorf("%s → %s %s %d: %s, want %s", f.from, f.to, f.proto, f.port, verb[got], verb[f.want])
		}
	}
}

// kind: NGINX takes clients from anywhere and reaches only the chat pods
// and DNS; the chat pods take NGINX and Prometheus (monitoring) and reach
// Redis, Postgres and DNS; the stores take the chat pods only. A pod
// without the chat label, in the namespace or another, reaches nothing.
func TestKindNetworkPoliciesAllowOnlyTheFlowsEachPodNeeds(t *testing.T) {
	s := mustRun(t, kindConfig())
	pods := podTemplates(s)
	ep := func(name, ip string) endpoint {
		return endpoint{name: name, ns: "switchboard", labels: pods[name], ip: ip}
	}
	eps := map[string]endpoint{
		"chat": ep("chat", "10.244.1.5"), "edge": ep("edge", "10.244.0.5"),
		"redis": ep("redis", "10.244.0.6"), "postgres": ep("postgres", "10.244.0.7"),
		"unlabelled":   {ns: "switchboard", labels: map[string]string{"run": "probe"}, ip: "10.244.2.9"},
		"other-ns-pod": {ns: "default", labels: map[string]string{"run": "probe"}, ip: "10.244.2.10"},
		"prometheus":   {ns: "monitoring", labels: map[string]string{"app.kubernetes.io/name": "prometheus"}, ip: "10.244.2.3"},
		"kube-dns":     {ns: "kube-system", labels: map[string]string{"k8s-app": "kube-dns"}, ip: "10.244.0.2"},
		"host-client":  {ip: "172.18.0.1"}, // the Docker network's gateway, through the node port
		"internet":     {ip: "203.0.113.9"},
	}
	checkFlows(t, s.all("networking.k8s.io/v1:NetworkPolicy"), eps, []flow{
		{"host-client", "edge", 8080, "TCP", true},
		{"edge", "chat", 8080, "TCP", true},
		{"edge", "kube-dns", 53, "UDP", true},
		{"edge", "kube-dns", 53, "TCP", true},
		{"prometheus", "chat", 8080, "TCP", true},
		{"chat", "redis", 6379, "TCP", true},
		{"chat", "postgres", 5432, "TCP", true},
		{"chat", "kube-dns", 53, "UDP", true},
		{"chat", "kube-dns", 53, "TCP", true},
		// Denied.
		{"host-client", "chat", 8080, "TCP", false},
		{"host-client", "edge", 9113, "TCP", false},
		{"edge", "redis", 6379, "TCP", false},
		{"edge", "internet", 443, "TCP", false},
		{"chat", "internet", 443, "TCP", false},
		{"chat", "edge", 8080, "TCP", false},
		{"chat", "redis", 6380, "TCP", false},
		{"redis", "postgres", 5432, "TCP", false},
		{"redis", "kube-dns", 53, "UDP", false},
		{"postgres", "internet", 443, "TCP", false},
		{"unlabelled", "redis", 6379, "TCP", false},
		{"unlabelled", "postgres", 5432, "TCP", false},
		{"unlabelled", "chat", 8080, "TCP", false},
		{"unlabelled", "kube-dns", 53, "UDP", false},
		{"other-ns-pod", "redis", 6379, "TCP", false},
		{"other-ns-pod", "chat", 8080, "TCP", false},
		{"prometheus", "redis", 6379, "TCP", false},
		{"internet", "postgres", 5432, "TCP", false},
	})
}

// AWS: the ALB (its subnets) and Prometheus reach the chat pods; the chat
// pods reach ElastiCache and RDS in the private subnets, DNS, and HTTPS
// outside the VPC (STS for IRSA), never the instance metadata; the
// bootstrap Job reaches RDS, DNS and HTTPS outside the VPC. Pods of the
// cluster, in the private subnets, do not reach the chat pods.
func TestAWSNetworkPoliciesAllowOnlyTheFlowsEachPodNeeds(t *testing.T) {
	s := mustRun(t, awsConfig()) // vpcCidr 10.0.0.0/16: public 10.0.{0,1,2}.0/24, private 10.0.{64,128,192}.0/18
	pods := podTemplates(s)
	ep := func(name, ip string) endpoint {
		return endpoint{name: name, ns: "switchboard", labels: pods[name], ip: ip}
	}
	eps := map[string]endpoint{
		"chat": ep("chat", "10.0.64.10"), "db-bootstrap": ep("db-bootstrap", "10.0.128.11"),
		"unlabelled":   {ns: "switchboard", labels: map[string]string{"run": "probe"}, ip: "10.0.64.99"},
		"other-ns-pod": {ns: "default", labels: map[string]string{"run": "probe"}, ip: "10.0.192.7"},
		"prometheus":   {ns: "monitoring", labels: map[string]string{"app.kubernetes.io/name": "prometheus"}, ip: "10.0.65.3"},
		"kube-dns":     {ns: "kube-system", labels: map[string]string{"k8s-app": "kube-dns"}, ip: "10.0.129.2"},
		"alb-node-a":   {ip: "10.0.0.20"},
		"alb-node-c":   {ip: "10.0.2.200"},
		"elasticache":  {ip: "10.0.130.5"},
		"rds":          {ip: "10.0.200.5"},
		"sts":          {ip: "52.94.1.1"},
		"imds":         {ip: "169.254.169.254"},
		"internet":     {ip: "203.0.113.9"},
	}
	checkFlows(t, s.all("networking.k8s.io/v1:NetworkPolicy"), eps, []flow{
		{"alb-node-a", "chat", 8080, "TCP", true},
		{"alb-node-c", "chat", 8080, "TCP", true},
		{"prometheus", "chat", 8080, "TCP", true},
		{"chat", "elasticache", 6379, "TCP", true},
		{"chat", "rds", 5432, "TCP", true},
		{"chat", "kube-dns", 53, "UDP", true},
		{"chat", "kube-dns", 53, "TCP", true},
		{"chat", "sts", 443, "TCP", true},
		{"db-bootstrap", "rds", 5432, "TCP", true},
		{"db-bootstrap", "sts", 443, "TCP", true},
		{"db-bootstrap", "kube-dns", 53, "UDP", true},
		// Denied.
		{"internet", "chat", 8080, "TCP", false},
		{"other-ns-pod", "chat", 8080, "TCP", false},
		{"unlabelled", "chat", 8080, "TCP", false},
		{"alb-node-a", "chat", 9090, "TCP", false},
		{"chat", "imds", 80, "TCP", false},
		{"chat", "imds", 443, "TCP", false},
		{"chat", "sts", 80, "TCP", false},
		{"chat", "other-ns-pod", 443, "TCP", false},
		{"chat", "internet", 6379, "TCP", false},
		{"db-bootstrap", "elasticache", 6379, "TCP", false},
		{"db-bootstrap", "chat", 8080, "TCP", false},
		{"db-bootstrap", "imds", 80, "TCP", false},
		{"unlabelled", "rds", 5432, "TCP", false},
		{"unlabelled", "sts", 443, "TCP", false},
		{"unlabelled", "kube-dns", 53, "UDP", false},
	})
}

// The Prometheus the policies admit is the one that scrapes: the chart's
// namespace in install mode, prometheusNamespace in existing mode.
func TestNetworkPoliciesAdmitThePrometheusThatScrapes(t *testing.T) {
	for _, tc := range []struct {
		config []string
		want   string
	}{
		{[]string{"observability", "install"}, "monitoring"},
		{[]string{"observability", "existing"}, "monitoring"},
		{[]string{"observability", "existing", "prometheusNamespace", "observability-system"}, "observability-system"},
	} {
		s := mustRun(t, kindConfig(tc.config...))
		chat := s.one(t, "networking.k8s.io/v1:NetworkPolicy", "chat")
		var from []string
		for _, r := range asSlice(get(chat, "spec.ingress")) {
			for _, p := range asSlice(get(r, "from")) {
				if m, ok := get(p, "namespaceSelector.matchLabels").(map[string]any); ok {
					from = append(from, fmt.Sprint(m["kubernetes.io/metadata.name"]))
				}
			}
		}
		if !slices.Equal(from, []string{tc.want}) {
			t.Errorf("%v: chat pods admit namespaces %v, want [%s]", tc.config, from, tc.want)
		}
	}
	_, err := run(kindConfig("observability", "install", "prometheusNamespace", "elsewhere"))
	if err == nil || !strings.Contains(err.Error(), "switchboard:prometheusNamespace") {
		t.Errorf("install mode with Prometheus elsewhere: %v, want prometheusNamespace refused", err)
	}
}
