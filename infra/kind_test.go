package main

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"gopkg.in/yaml.v3"

	"github.com/switchboard-dev/switchboard/blueprint"
	"github.com/switchboard-dev/switchboard/infra/observability"
	"github.com/switchboard-dev/switchboard/infra/placement"
	"github.com/switchboard-dev/switchboard/infra/stackconfig"
)

func chatContainer(t *testing.T, s *stack) map[string]any {
	return get(s.one(t, "apps/v1:Deployment", "chat"), "spec.template.spec.containers.0").(map[string]any)
}

func env(c map[string]any) map[string]any {
	out := map[string]any{}
	for _, e := range c["env"].([]any) {
		e := e.(map[string]any)
		out[e["name"].(string)] = e["value"]
	}
	return out
}

func TestGraceCoversPreStopAndTheWholeDrain(t *testing.T) {
	for _, tc := range []struct {
		preStop, delay, timeout string
		preStopS, windowS       float64
	}{
		{"", "", "", 5, 30}, // the defaults: 5s + 5s + 20s
		{"10s", "15s", "1m", 10, 85},
		{"0s", "1s", "2s", 0, 3},
		{"1500ms", "2s", "2s", 2, 5.5},
	} {
		t.Run(tc.preStop+"/"+tc.delay+"/"+tc.timeout, func(t *testing.T) {
			var over []string
			for k, v := range map[string]string{"preStop": tc.preStop, "drainDelay": tc.delay, "drainTimeout": tc.timeout} {
				if v != "" {
					over = append(over, k, v)
				}
			}
			s := mustRun(t, kindConfig(over...))
			pod := get(s.one(t, "apps/v1:Deployment", "chat"), "spec.template.spec").(map[string]any)
			grace := pod["terminationGracePeriodSeconds"].(float64)
			if grace <= tc.windowS {
				t.Errorf("terminationGracePeriodSeconds %v: want more than preStop + DRAIN_DELAY + DRAIN_TIMEOUT = %v", grace, tc.windowS)
			}
			c := chatContainer(t, s)
			if got := get(c, "lifecycle.preStop.sleep.seconds"); got != tc.preStopS {
				t.Errorf("preStop sleep %v s: want %v", got, tc.preStopS)
			}
			e := env(c)
			for k, v := range map[string]string{"DRAIN_DELAY": tc.delay, "DRAIN_TIMEOUT": tc.timeout} {
				if d, err := time.ParseDuration(v); err == nil && e[k] != d.String() {
					t.Errorf("%s %v: want %s, the value the grace was computed from", k, e[k], d)
				}
			}
		})
	}
}

func TestChatPodIsProbedAndLockedDown(t *testing.T) {
	s := mustRun(t, kindConfig())
	pod := get(s.one(t, "apps/v1:Deployment", "chat"), "spec.template.spec").(map[string]any)
	c := chatContainer(t, s)
	for path, want := range map[string]any{
		"livenessProbe.httpGet.path":               "/health",
		"readinessProbe.httpGet.path":              "/ready",
		"securityContext.readOnlyRootFilesystem":   true,
		"securityContext.allowPrivilegeEscalation": false,
		"securityContext.capabilities.drop.0":      "ALL",
		"resources.requests.cpu":                   "250m",
		"resources.limits.memory":                  "512Mi",
		"image":                                    "switchboard/chatserver:dev",
	} {
		if got := get(c, path); got != want {
			t.Errorf("container %s = %v, want %v", path, got, want)
		}
	}
	for path, want := range map[string]any{
		"securityContext.runAsNonRoot":            true,
		"topologySpreadConstraints.0.topologyKey": "kubernetes.io/hostname",
		"topologySpreadConstraints.0.maxSkew":     float64(1),
	} {
		if got := get(pod, path); got != want {
			t.Errorf("pod %s = %v, want %v", path, got, want)
		}
	}
	if got := get(c, "envFrom.0.secretRef.name"); got != "chat-env" {
		t.Errorf("secrets reach the pod through %v, want the Secret chat-env", got)
	}
	// GOMEMLIMIT caps the heap however GOGC is set (docs/internals.md,
	// Garbage collection): it must be this container's memory limit in
	// bytes. The downward API gives a resourceFieldRef in
	// units of its divisor, 1 (bytes) unless set, and the node's allocatable
	// memory for a container without a limit
	// (https://kubernetes.io/docs/concepts/workloads/pods/downward-api/#downwardapi-resourcefieldref);
	// Go reads a plain number as bytes
	// (https://pkg.go.dev/runtime#hdr-Environment_Variables).
	var ref map[string]any
	for _, e := range c["env"].([]any) {
		if e := e.(map[string]any); e["name"] == "GOMEMLIMIT" {
			ref, _ = get(e, "valueFrom.resourceFieldRef").(map[string]any)
		}
	}
	if ref == nil || ref["resource"] != "limits.memory" || ref["containerName"] != c["name"] {
		t.Errorf("GOMEMLIMIT comes from %v, want container %v's limits.memory", ref, c["name"])
	}
	if d, set := ref["divisor"]; set && d != "1" {
		t.Errorf("GOMEMLIMIT's divisor is %v: Go would read the limit in those units as bytes", d)
	}
}

func TestAutoscalerAndDisruptionBudget(t *testing.T) {
	for _, tc := range []struct {
		name     string
		config   map[string]string
		min, max float64
	}{
		{"defaults", kindConfig(), 3, 10},
		{"configured", kindConfig("replicas", "4", "maxReplicas", "6"), 4, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustRun(t, tc.config)
			hpa := s.one(t, "autoscaling/v2:HorizontalPodAutoscaler", "chat")
			if get(hpa, "spec.minReplicas") != tc.min || get(hpa, "spec.maxReplicas") != tc.max {
				t.Errorf("HPA %v to %v, want %v to %v", get(hpa, "spec.minReplicas"), get(hpa, "spec.maxReplicas"), tc.min, tc.max)
			}
			if get(hpa, "spec.scaleTargetRef.name") != "chat" {
				t.Errorf("HPA scales %v, want the chat Deployment", get(hpa, "spec.scaleTargetRef"))
			}
			if get(s.one(t, "apps/v1:Deployment", "chat"), "spec.replicas") != tc.min {
				t.Errorf("Deployment starts with %v replicas, want the minimum %v", get(s.one(t, "apps/v1:Deployment", "chat"), "spec.replicas"), tc.min)
			}
			pdb := s.one(t, "policy/v1:PodDisruptionBudget", "chat")
			if get(pdb, "spec.maxUnavailable") != float64(1) {
				t.Errorf("PDB maxUnavailable %v, want 1", get(pdb, "spec.maxUnavailable"))
			}
		})
	}
}

func TestBadConfigIsRefusedByKey(t *testing.T) {
	for _, tc := range []struct {
		name    string
		config  map[string]string
		secrets []string
		want    string
	}{
		{"max below min", kindConfig("replicas", "5", "maxReplicas", "3"), nil, "switchboard:maxReplicas"},
		{"unknown target", kindConfig("target", "gcp"), nil, "one of [kind aws]"},
		{"bad duration", kindConfig("drainDelay", "soon"), nil, "switchboard:drainDelay"},
		{"plaintext secret", kindConfig(), []string{"switchboard:databasePassword"}, "switchboard:jwtSecret is stored in plain text"},
		{"missing secret", func() map[string]string { c := kindConfig(); delete(c, "switchboard:jwtSecret"); return c }(), nil, "switchboard:jwtSecret is not set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := run(tc.config, tc.secrets...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v: want one naming %q", err, tc.want)
			}
		})
	}
}

func TestNoSecretInPlainTextInAnyInput(t *testing.T) {
	for _, tc := range []struct {
		name   string
		config map[string]string
		stored int // resources holding secrets: the chat env Secret and each store's
	}{{"kind", kindConfig(), 2}, {"aws", awsConfig(), 3}} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustRun(t, tc.config)
			secrets := 0
			for _, r := range s.resources {
				plaintexts(resource.NewObjectProperty(r.Inputs), r.Name, []string{testJWTSecret, testDBPass, testRedisToken}, func(path string) {
					t.Errorf("%s (%s): %s holds a secret in plain text", r.Name, r.Type, path)
				})
				if r.Inputs.ContainsSecrets() {
					secrets++
				}
			}
			// If nothing is marked secret, the check above proves nothing.
			if secrets < tc.stored {
				t.Errorf("%d resources hold secret inputs, want at least %d", secrets, tc.stored)
			}
			// On AWS the server logs in by IAM token: no password at all.
			if url, _ := get(s.one(t, "core/v1:Secret", "chat-env"), "stringData.DATABASE_URL").(string); strings.Contains(url, "password-for-tests") != (tc.name == "kind") {
				t.Errorf("DATABASE_URL %q: want the password on kind only", url)
			}
		})
	}
}

func TestNginxEdgeIsStickyAndFollowsThePods(t *testing.T) {
	s := mustRun(t, kindConfig())
	conf, _ := get(s.one(t, "core/v1:ConfigMap", "edge"), "data").(map[string]any)["nginx.conf"].(string)
	for _, want := range []string{
		"ip_hash;",
		"proxy_set_header Upgrade $http_upgrade;",
		"proxy_set_header Connection $connection_upgrade;",
		"resolver kube-dns.kube-system.svc.cluster.local",
		"server chat-headless.switchboard.svc.cluster.local:8080",
		" resolve",
		"proxy_next_upstream error timeout http_503;",
		// The edge overwrites the client's X-Forwarded-For (TRUSTED_PROXIES
		// is the pod subnet NGINX connects from) and hides /metrics and /ready.
		"proxy_set_header X-Forwarded-For $remote_addr;",
		"location = /metrics",
		"location = /ready",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("nginx.conf lacks %q:\n%s", want, conf)
		}
	}
	// NGINX re-resolves the pods every few seconds: with only ready pods
	// published, it would have none for those seconds after an outage that
	// made every pod unready.
	if get(s.one(t, "core/v1:Service", "chat-headless"), "spec.publishNotReadyAddresses") != true {
		t.Error("chat-headless: want publishNotReadyAddresses, NGINX passing an unready pod's 503 on to the next")
	}
	svc := s.one(t, "core/v1:Service", "edge")
	if get(svc, "spec.type") != "NodePort" || get(svc, "spec.ports.0.nodePort") != float64(30080) {
		t.Errorf("edge Service %v: want NodePort 30080", get(svc, "spec"))
	}
	if get(svc, "spec.externalTrafficPolicy") != "Local" {
		t.Error("edge Service: want externalTrafficPolicy Local, so ip_hash sees the client's address")
	}
}

func TestObservabilityModes(t *testing.T) {
	for _, tc := range []struct {
		mode     string
		releases int
	}{{stackconfig.Install, 1}, {stackconfig.Existing, 0}} {
		t.Run(tc.mode, func(t *testing.T) {
			s := mustRun(t, kindConfig("observability", tc.mode, "replicas", "4"))
			// Besides the autoscaling charts, installed in both modes.
			rel := s.release("kube-prometheus-stack")
			if (rel != nil) != (tc.releases == 1) {
				t.Fatalf("kube-prometheus-stack installed: %v, want %d release", rel != nil, tc.releases)
			}
			if rel != nil {
				if get(rel, "chart") != "kube-prometheus-stack" || get(rel, "version") != stackconfig.Defaults().PrometheusStackVer {
					t.Errorf("release %v %v: want kube-prometheus-stack pinned at %s", get(rel, "chart"), get(rel, "version"), stackconfig.Defaults().PrometheusStackVer)
				}
			}
			sm := s.one(t, "monitoring.coreos.com/v1:ServiceMonitor", "chat")
			if get(sm, "spec.jobLabel") != "app.kubernetes.io/part-of" {
				t.Errorf("ServiceMonitor jobLabel %v: want the part-of label, so that job is switchboard", get(sm, "spec.jobLabel"))
			}
			rules := s.one(t, "monitoring.coreos.com/v1:PrometheusRule", "switchboard")
			var exprs []string
			for _, r := range get(rules, "spec.groups.0.rules").([]any) {
				exprs = append(exprs, get(r, "expr").(string))
			}
			if len(exprs) < 10 || !strings.Contains(strings.Join(exprs, "\n"), ") < 4") {
				t.Errorf("PrometheusRule has %d rules; want all of alerts.yaml with the minimum at replicas (4)", len(exprs))
			}
			dash := s.one(t, "core/v1:ConfigMap", "switchboard-dashboard")
			if get(dash, "metadata.labels.grafana_dashboard") != "1" {
				t.Error("dashboard ConfigMap lacks the sidecar label grafana_dashboard=1")
			}
			if j, _ := get(dash, "data").(map[string]any)["switchboard.json"].(string); j == "" || strings.Contains(j, "${DS_PROMETHEUS}") {
				t.Error("dashboard ConfigMap: want switchboard.json with the datasource uid filled in")
			}
		})
	}
}

func TestKindClusterMapsTheNodePorts(t *testing.T) {
	mapped := map[int]int{}
	workers := 0
	for _, n := range kindCluster(t) {
		for _, m := range n.ExtraPortMappings {
			mapped[m.ContainerPort] = m.HostPort
		}
		if n.Role == "worker" {
			workers++
		}
	}
	if mapped[stackconfig.Defaults().EdgeNodePort] != 8080 || !strings.HasSuffix(blueprint.KindEndpoint, ":8080") {
		t.Errorf("edge node port %d maps to host %d; chatUrl is %s", stackconfig.Defaults().EdgeNodePort, mapped[stackconfig.Defaults().EdgeNodePort], blueprint.KindEndpoint)
	}
	if mapped[observability.GrafanaNodePort] != 3000 || !strings.HasSuffix(blueprint.KindDashboardsURL, ":3000") {
		t.Errorf("Grafana node port %d maps to host %d; grafanaUrl is %s", observability.GrafanaNodePort, mapped[observability.GrafanaNodePort], blueprint.KindDashboardsURL)
	}
	if workers < 2 {
		t.Errorf("%d workers: want at least 2 so the topology spread means something", workers)
	}
}

// kindNode is a node of infra/kind/cluster.yaml.
type kindNode struct {
	Role              string
	Image             string
	Labels            map[string]string
	ExtraPortMappings []struct {
		ContainerPort int `yaml:"containerPort"`
		HostPort      int `yaml:"hostPort"`
	} `yaml:"extraPortMappings"`
}

func kindCluster(t *testing.T) []kindNode {
	t.Helper()
	b, err := os.ReadFile("kind/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cluster struct{ Nodes []kindNode }
	if err := yaml.Unmarshal(b, &cluster); err != nil {
		t.Fatal(err)
	}
	return cluster.Nodes
}

// noSchedule are the NoSchedule taints a node of the cluster carries:
// kubeadm taints control-plane nodes node-role.kubernetes.io/control-plane,
// and kind removes that taint only from a cluster without workers.
func (n kindNode) noSchedule(nodes []kindNode) []string {
	if n.Role != "control-plane" {
		return nil
	}
	for _, o := range nodes {
		if o.Role == "worker" {
			return []string{placement.ControlPlaneTaint}
		}
	}
	return nil
}

func (n kindNode) maps(containerPort int) bool {
	for _, m := range n.ExtraPortMappings {
		if m.ContainerPort == containerPort {
			return true
		}
	}
	return false
}

// On kind the host's port reaches one node, the one whose extraPortMappings
// name the edge's NodePort (kind's configuration guide: Extra Port
// Mappings). With externalTrafficPolicy Local a node forwards NodePort
// traffic only to endpoints on itself and drops it where there are none
// (Kubernetes docs, "Virtual IPs and Service Proxies": External traffic
// policy). So every node the edge pods can be scheduled on (their
// nodeSelector matches its labels and they tolerate its NoSchedule taints)
// must be a mapped one, and there must be one: kind's Ingress guide pins the
// edge to a node labelled ingress-ready=true for this reason.
func TestKindEdgeRunsOnTheNodeTheHostPortReaches(t *testing.T) {
	for _, tc := range []struct{ name, replicas string }{{"default replicas", ""}, {"three replicas", "3"}} {
		t.Run(tc.name, func(t *testing.T) {
			var over []string
			if tc.replicas != "" {
				over = []string{"edgeReplicas", tc.replicas}
			}
			s := mustRun(t, kindConfig(over...))
			svc := s.one(t, "core/v1:Service", "edge")
			if get(svc, "spec.externalTrafficPolicy") != "Local" {
				t.Errorf("edge Service policy %v: want Local, so that ip_hash sees the client's address", get(svc, "spec.externalTrafficPolicy"))
			}
			port := int(get(svc, "spec.ports.0.nodePort").(float64))
			pod := get(s.one(t, "apps/v1:Deployment", "edge"), "spec.template.spec").(map[string]any)
			nodes := kindCluster(t)
			fits := schedulable(pod, nodes)
			for _, i := range fits {
				if !nodes[i].maps(port) {
					t.Errorf("edge pods can run on node %d (%s), which does not map node port %d: the host's traffic would find no local endpoint", i, nodes[i].Role, port)
				}
			}
			if len(fits) == 0 {
				t.Errorf("edge pods (nodeSelector %v, tolerations %v) fit no node of kind/cluster.yaml", pod["nodeSelector"], pod["tolerations"])
			}
		})
	}
}

// schedulable lists the nodes of kind/cluster.yaml that pod (a pod spec)
// fits: its nodeSelector matches the node's labels and it tolerates the
// node's NoSchedule taints.
func schedulable(pod map[string]any, nodes []kindNode) []int {
	selector, _ := pod["nodeSelector"].(map[string]any)
	tolerated := map[string]bool{}
	tolerations, _ := pod["tolerations"].([]any)
	for _, tol := range tolerations {
		if get(tol, "operator") == "Exists" && (get(tol, "effect") == "NoSchedule" || get(tol, "effect") == nil) {
			tolerated[fmt.Sprint(get(tol, "key"))] = true
		}
	}
	var fits []int
nodes:
	for i, n := range nodes {
		for k, v := range selector {
			if n.Labels[k] != v {
				continue nodes
			}
		}
		for _, taint := range n.noSchedule(nodes) {
			if !tolerated[taint] {
				continue nodes
			}
		}
		fits = append(fits, i)
	}
	return fits
}

// The stores' volumes are local-path ones: the provisioner creates each on
// the node that first runs its pod, and the PersistentVolume's node affinity
// holds the pod to that node from then on. If that node is drained, the store
// stays Pending and every chat pod goes unready without it (seen on kind:
// issue 15). Node maintenance drains workers, the nodes that hold the chat
// pods, so the stores must fit only nodes that are not workers.
func TestKindStoresRunWhereNoWorkerDrainReaches(t *testing.T) {
	s := mustRun(t, kindConfig())
	nodes := kindCluster(t)
	for _, store := range []string{"redis", "postgres"} {
		pod := get(s.one(t, "apps/v1:StatefulSet", store), "spec.template.spec").(map[string]any)
		fits := schedulable(pod, nodes)
		if len(fits) == 0 {
			t.Errorf("%s (nodeSelector %v, tolerations %v) fits no node of kind/cluster.yaml", store, pod["nodeSelector"], pod["tolerations"])
		}
		for _, i := range fits {
			if nodes[i].Role == "worker" {
				t.Errorf("%s can run on node %d, a worker: draining it would strand the store's node-local volume", store, i)
			}
		}
	}
}

// kind pins its node images by digest: an image by tag alone may be built
// for another kind release (kind's release notes: "You must use the @sha256
// digest to guarantee an image built for this release").
func TestKindNodeImageIsPinnedByDigest(t *testing.T) {
	pinned := regexp.MustCompile(`^kindest/node:v1\.[0-9]+\.[0-9]+@sha256:[a-f0-9]{64}$`)
	nodes := kindCluster(t)
	for i, n := range nodes {
		if !pinned.MatchString(n.Image) || n.Image != nodes[0].Image {
			t.Errorf("node %d (%s) image %q: want every node on one kindest/node:<version>@sha256:<digest>", i, n.Role, n.Image)
		}
	}
}

// The in-cluster Redis runs maxmemory-policy noeviction: a full Redis refuses
// writes rather than drop keys. Every room key has a TTL, so a volatile-*
// policy would evict a room's seq state key by key (issue 25). redis-server
// takes the last of a repeated option.
func TestKindRedisNeverEvictsKeys(t *testing.T) {
	s := mustRun(t, kindConfig())
	args, _ := get(s.one(t, "apps/v1:StatefulSet", "redis"), "spec.template.spec.containers.0.args").([]any)
	policy := ""
	for i, a := range args {
		if a == "--maxmemory-policy" && i+1 < len(args) {
			policy, _ = args[i+1].(string)
		}
	}
	if policy != "noeviction" {
		t.Errorf("redis args %v: maxmemory-policy %q, want noeviction", args, policy)
	}
}
