package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gruntwork-io/terratest/modules/k8s"
	"github.com/gruntwork-io/terratest/modules/logger"
	"github.com/gruntwork-io/terratest/modules/retry"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"gopkg.in/yaml.v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/switchboard-dev/switchboard/infra/controlplane"
	"github.com/switchboard-dev/switchboard/infra/data"
)

// The Kubernetes objects of the dev stack, applied to a real API server with
// a controller manager, a scheduler and kwok's fake nodes: every object is
// accepted, every workload rolls out, Services get endpoints.
func TestDevStackOnARealAPIServer(t *testing.T) {
	a := startAPIServer(t, 2)
	kc, cluster, dir, apply := a.kc, a.cluster, a.dir, a.apply

	// Existing mode with one receiver of each type: its AlertmanagerConfig
	// is checked against the operator's schema.
	config, secrets := receiversConfig(kindConfig("observability", "existing"))
	s, err := run(config, secrets...)
	if err != nil {
		t.Fatalf("program: %v", err)
	}
	docs, kinds := manifests(t, s)
	applied := time.Now()
	// Each object in its own namespace: prometheus-adapter's are in kube-system.
	if err := apply(cluster, docs); err != nil {
		t.Fatalf("the stack's objects were refused: %v", err)
	}
	logf(t, "applied %d objects: %s", len(kinds), strings.Join(kinds, ", "))

	t.Run("EveryWorkloadRollsOutToReady", func(t *testing.T) {
		var times []string
		for _, w := range []string{"deployment/chat", "deployment/edge", "statefulset/redis", "statefulset/postgres"} {
			if err := k8s.RunKubectlE(t, kc, "rollout", "status", w, "--timeout=90s"); err != nil {
				t.Errorf("%s did not roll out: %v", w, err)
				continue
			}
			times = append(times, fmt.Sprintf("%s %s", w, time.Since(applied).Round(100*time.Millisecond)))
		}
		logf(t, "ready after apply: %s", strings.Join(times, ", "))
		nodes := map[string]int{}
		for _, p := range k8s.ListPods(t, kc, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=chat"}) {
			nodes[p.Spec.NodeName]++
		}
		if len(nodes) < 3 {
			t.Errorf("chat pods on nodes %v: want them spread over 3 nodes", nodes)
		}
	})

	// The host's port reaches kind's control-plane node only, and the edge
	// Service (externalTrafficPolicy Local) answers only on nodes with an
	// edge pod: every edge pod must be there.
	t.Run("EdgePodsRunOnTheNodeTheHostPortReaches", func(t *testing.T) {
		pods := k8s.ListPods(t, kc, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=edge"})
		if len(pods) == 0 {
			t.Fatal("no edge pods")
		}
		for _, p := range pods {
			if p.Spec.NodeName != kindControlPlaneName {
				t.Errorf("edge pod %s on node %q: want %s, the node whose port mapping the host's traffic arrives at", p.Name, p.Spec.NodeName, kindControlPlaneName)
			}
		}
	})

	t.Run("EveryServiceHasEndpoints", func(t *testing.T) {
		for _, svc := range []string{"chat", "chat-headless", "edge", "redis", "postgres"} {
			retry.DoWithRetry(t, "endpoints of "+svc, 100, 300*time.Millisecond, func() (string, error) {
				out, err := k8s.RunKubectlAndGetOutputE(t, kc, "get", "endpointslices", "-l", "kubernetes.io/service-name="+svc,
					"-o", "jsonpath={.items[*].endpoints[?(@.conditions.ready==true)].addresses[*]}")
				if err != nil || strings.TrimSpace(out) == "" {
					return "", fmt.Errorf("no ready endpoint yet (%v)", err)
				}
				return out, nil
			})
		}
	})

	t.Run("AutoscalerAndDisruptionBudgetAreAdmitted", func(t *testing.T) {
		out, err := k8s.RunKubectlAndGetOutputE(t, kc, "get", "hpa", "chat", "-o", "jsonpath={.spec.minReplicas}/{.spec.maxReplicas}")
		if err != nil || out != "3/10" {
			t.Errorf("HPA %s (%v), want 3/10", out, err)
		}
		retry.DoWithRetry(t, "PDB status", 100, 300*time.Millisecond, func() (string, error) {
			out, err := k8s.RunKubectlAndGetOutputE(t, kc, "get", "pdb", "chat", "-o", "jsonpath={.status.expectedPods}/{.status.disruptionsAllowed}")
			if out != "3/1" {
				return "", fmt.Errorf("PDB expected/allowed %q (%v), want 3/1", out, err)
			}
			return out, nil
		})
	})

	// The API server validates NetworkPolicies (ports, peers, ipBlocks and
	// their except ranges): the dev stack's are stored, the AWS stack's,
	// with their ipBlocks, pass a server-side dry run, and one whose except
	// lies outside its CIDR is refused.
	t.Run("NetworkPoliciesAreAccepted", func(t *testing.T) {
		out, err := k8s.RunKubectlAndGetOutputE(t, kc, "get", "networkpolicies", "-o", "jsonpath={.items[*].metadata.name}")
		got := strings.Fields(out)
		slices.Sort(got)
		if want := []string{"chat", "default-deny", "edge", "postgres", "redis"}; err != nil || !slices.Equal(got, want) {
			t.Errorf("NetworkPolicies on the server %v (%v), want %v", got, err, want)
		}
		dryRun := func(docs string) error {
			f := filepath.Join(dir, fmt.Sprintf("dry-run-%d.yaml", time.Now().UnixNano()))
			if err := os.WriteFile(f, []byte(docs), 0o600); err != nil {
				return err
			}
			out, err := k8s.RunKubectlAndGetOutputE(t, kc, "apply", "--dry-run=server", "-f", f)
			if err != nil {
				return fmt.Errorf("%w: %s", err, out)
			}
			return nil
		}
		var aws strings.Builder
		for _, np := range mustRun(t, awsConfig()).all("networking.k8s.io/v1:NetworkPolicy") {
			b, err := yaml.Marshal(np)
			if err != nil {
				t.Fatal(err)
			}
			aws.WriteString("---\n")
			aws.Write(b)
		}
		if err := dryRun(aws.String()); err != nil {
			t.Errorf("the AWS stack's NetworkPolicies were refused: %v", err)
		}
		// 0.0.0.0/0 less 10.0.0.0/16 and 169.254.0.0/16, made 10.0.0.0/8:
		// the link-local except falls outside it.
		broken := strings.Replace(aws.String(), "cidr: 0.0.0.0/0", "cidr: 10.0.0.0/8", 1)
		if broken == aws.String() {
			t.Fatal("the AWS policies have no ipBlock 0.0.0.0/0 to break")
		}
		if err := dryRun(broken); err == nil || !strings.Contains(err.Error(), "except") {
			t.Errorf("an ipBlock whose except is outside its CIDR: got %v, want a refusal naming except", err)
		}
	})

	t.Run("ABrokenObjectIsRejected", func(t *testing.T) {
		broken := strings.Replace(one(t, s, "apps/v1:Deployment", "chat"), "name: chat\n", "name: chat-broken\n", 1)
		broken = strings.ReplaceAll(broken, "250m", "-250m")
		err := apply(kc, broken)
		if err == nil || !strings.Contains(err.Error(), "must be greater than or equal to 0") {
			t.Errorf("a Deployment asking for -250m CPU: got %v, want a refusal of the negative request", err)
		}
	})
}

// The dev stack with redisMode cluster on a real API server: the cluster's
// objects are accepted; the StatefulSet rolls out its six pods, all on the
// node the stores run on, each with its claim bound; the headless Service
// lists every pod; the creation Job's pod is scheduled beside them; the
// Job's NetworkPolicy is stored.
func TestRedisClusterOnARealAPIServer(t *testing.T) {
	a := startAPIServer(t, 7) // six Redis nodes' volumes and Postgres's
	s := mustRun(t, kindConfig("redisMode", "cluster"))
	docs, kinds := manifests(t, s)
	applied := time.Now()
	if err := a.apply(a.cluster, docs); err != nil {
		t.Fatalf("the stack's objects were refused: %v", err)
	}
	logf(t, "applied %d objects", len(kinds))
	if err := k8s.RunKubectlE(t, a.kc, "rollout", "status", "statefulset/redis", "--timeout=90s"); err != nil {
		t.Fatalf("statefulset/redis did not roll out: %v", err)
	}
	logf(t, "statefulset/redis ready %s after apply", time.Since(applied).Round(100*time.Millisecond))
	pods := k8s.ListPods(t, a.kc, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=redis"})
	if len(pods) != 6 {
		t.Errorf("%d redis pods, want 6", len(pods))
	}
	for _, p := range pods {
		if p.Spec.NodeName != kindControlPlaneName {
			t.Errorf("redis pod %s on %q, want %s with the other stores", p.Name, p.Spec.NodeName, kindControlPlaneName)
		}
	}
	retry.DoWithRetry(t, "the redis Service's endpoints", 100, 300*time.Millisecond, func() (string, error) {
		out, err := k8s.RunKubectlAndGetOutputE(t, a.kc, "get", "endpointslices", "-l", "kubernetes.io/service-name=redis", "-o", "jsonpath={.items[*].endpoints[*].hostname}")
		if got := strings.Fields(out); err != nil || len(got) != 6 {
			return "", fmt.Errorf("endpoint hostnames %v (%v), want redis-0 to redis-5", got, err)
		}
		return out, nil
	})
	retry.DoWithRetry(t, "claims bound", 100, 300*time.Millisecond, func() (string, error) {
		out, err := k8s.RunKubectlAndGetOutputE(t, a.kc, "get", "pvc", "-o", "jsonpath={.items[*].status.phase}")
		if got := strings.Fields(out); err != nil || len(got) != 7 || slices.ContainsFunc(got, func(p string) bool { return p != "Bound" }) {
			return "", fmt.Errorf("claims %v (%v), want 7 Bound", got, err)
		}
		return out, nil
	})
	retry.DoWithRetry(t, "the creation Job's pod", 100, 300*time.Millisecond, func() (string, error) {
		out, err := k8s.RunKubectlAndGetOutputE(t, a.kc, "get", "pods", "-l", "app.kubernetes.io/name="+data.ClusterSetup, "-o", "jsonpath={.items[*].spec.nodeName}")
		if err != nil || strings.TrimSpace(out) != kindControlPlaneName {
			return "", fmt.Errorf("creation pod on %q (%v), want one on %s", out, err, kindControlPlaneName)
		}
		return out, nil
	})
	out, err := k8s.RunKubectlAndGetOutputE(t, a.kc, "get", "networkpolicies", "-o", "jsonpath={.items[*].metadata.name}")
	if got := strings.Fields(out); err != nil || !slices.Contains(got, data.ClusterSetup) || !slices.Contains(got, "redis") {
		t.Errorf("NetworkPolicies %v (%v): want redis's and %s's", got, err, data.ClusterSetup)
	}
}

// apiServer is a control plane (etcd, kube-apiserver, controller manager,
// scheduler, kwok) with what the cluster has before the dev stack: three
// fake nodes, kind's control-plane node, the Prometheus Operator's CRDs
// (existing mode) and volumes for the stores.
type apiServer struct {
	dir         string
	kc, cluster *k8s.KubectlOptions // the app namespace, and the cluster
	t           *testing.T
}

func startAPIServer(t *testing.T, volumes int) *apiServer {
	bin := tools(t)
	// terratest runs kubectl from PATH: the one make tools built, of the
	// control plane's release.
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	started := time.Now()
	cp, err := controlplane.Start(ctx, dir, bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cp.Stop)
	logf(t, "control plane ready in %s (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok; Kubernetes %s)", time.Since(started).Round(100*time.Millisecond), serverVersion(t, cp))
	a := &apiServer{dir: dir, t: t, kc: k8s.NewKubectlOptions("", cp.Kubeconfig, "switchboard"), cluster: k8s.NewKubectlOptions("", cp.Kubeconfig, "")}
	if err := a.apply(a.cluster, fakeNodes(3)+kindControlPlane(t)+persistentVolumes(volumes, dir)); err != nil {
		t.Fatalf("nodes and volumes: %v", err)
	}
	for _, crd := range operatorCRDs(t) {
		if err := k8s.RunKubectlE(t, a.cluster, "apply", "--server-side", "-f", crd); err != nil {
			t.Fatalf("CRD %s: %v", filepath.Base(crd), err)
		}
	}
	// kubectl wait fails outright on a CRD whose status has no conditions
	// yet ("status.conditions accessor error"): again until it has them.
	retry.DoWithRetry(t, "CRDs established", 30, time.Second, func() (string, error) {
		return "", k8s.RunKubectlE(t, a.cluster, "wait", "--for", "condition=established", "--timeout=30s", "crd/servicemonitors.monitoring.coreos.com", "crd/prometheusrules.monitoring.coreos.com", "crd/alertmanagerconfigs.monitoring.coreos.com")
	})
	return a
}

// apply applies YAML documents server-side, as the provider does.
func (a *apiServer) apply(opts *k8s.KubectlOptions, docs string) error {
	f := filepath.Join(a.dir, fmt.Sprintf("apply-%d.yaml", time.Now().UnixNano()))
	if err := os.WriteFile(f, []byte(docs), 0o600); err != nil {
		return err
	}
	out, err := k8s.RunKubectlAndGetOutputE(a.t, opts, "apply", "--server-side", "--field-manager", "pulumi-mock", "-f", f)
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

// manifests turns every Kubernetes resource the program declared into YAML
// documents, the Namespace first, and lists their kinds.
func manifests(t *testing.T, s *stack) (string, []string) {
	var docs []map[string]any
	for _, r := range s.resources {
		if !strings.HasPrefix(r.Type, "kubernetes:") || strings.HasPrefix(r.Type, "kubernetes:helm.sh") {
			continue
		}
		d := plain(resource.NewObjectProperty(r.Inputs)).(map[string]any)
		// An object without a name is auto-named by the provider, after
		// its resource (the creation and bootstrap Jobs).
		if meta, ok := d["metadata"].(map[string]any); ok && meta["name"] == nil {
			meta["name"] = r.Name + "-auto"
		}
		docs = append(docs, d)
	}
	slices.SortStableFunc(docs, func(a, b map[string]any) int {
		return boolInt(b["kind"] == "Namespace") - boolInt(a["kind"] == "Namespace")
	})
	var out strings.Builder
	var kinds []string
	for _, d := range docs {
		b, err := yaml.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		out.WriteString("---\n")
		out.Write(b)
		kinds = append(kinds, fmt.Sprintf("%s/%s", d["kind"], get(d, "metadata.name")))
	}
	return out.String(), kinds
}

func one(t *testing.T, s *stack, kind, name string) string {
	b, err := yaml.Marshal(s.one(t, kind, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// tools finds the control-plane binaries that `make tools` builds.
func tools(t *testing.T) string {
	out, err := exec.Command("../scripts/tools.sh").Output()
	if err != nil {
		t.Fatalf("scripts/tools.sh (make tools): %v", err)
	}
	return strings.TrimSpace(string(out))
}

// operatorCRDs are the ServiceMonitor and PrometheusRule CRDs from the
// prometheus-operator module, as the chart would install them.
func operatorCRDs(t *testing.T) []string {
	cmd := exec.Command("go", "mod", "download", "-json", "github.com/prometheus-operator/prometheus-operator@v0.85.0")
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("download the prometheus-operator module for its CRDs: %v", err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil {
		t.Fatal(err)
	}
	crds := filepath.Join(mod.Dir, "example", "prometheus-operator-crd")
	return []string{
		filepath.Join(crds, "monitoring.coreos.com_servicemonitors.yaml"),
		filepath.Join(crds, "monitoring.coreos.com_prometheusrules.yaml"),
		filepath.Join(crds, "monitoring.coreos.com_alertmanagerconfigs.yaml"),
	}
}

// fakeNodes are kwok nodes, each in its own zone.
func fakeNodes(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-%[1]d
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels: {kubernetes.io/hostname: kwok-node-%[1]d, kubernetes.io/os: linux, type: kwok, topology.kubernetes.io/zone: zone-%[1]d}
status:
  allocatable: {cpu: "4", memory: 8Gi, pods: "110"}
  capacity: {cpu: "4", memory: 8Gi, pods: "110"}
`, i)
	}
	return b.String()
}

const kindControlPlaneName = "switchboard-control-plane"

// kindControlPlane is the node kind makes of kind/cluster.yaml's
// control-plane entry: its labels, and the control-plane taint kubeadm
// sets and kind keeps in a cluster with workers.
func kindControlPlane(t *testing.T) string {
	nodes := kindCluster(t)
	for _, n := range nodes {
		if n.Role != "control-plane" {
			continue
		}
		labels := map[string]string{"kubernetes.io/hostname": kindControlPlaneName, "kubernetes.io/os": "linux", "type": "kwok", "node-role.kubernetes.io/control-plane": ""}
		for k, v := range n.Labels {
			labels[k] = v
		}
		var taints []map[string]string
		for _, key := range n.noSchedule(nodes) {
			taints = append(taints, map[string]string{"key": key, "effect": "NoSchedule"})
		}
		b, err := yaml.Marshal(map[string]any{
			"apiVersion": "v1", "kind": "Node",
			"metadata": map[string]any{
				"name":        kindControlPlaneName,
				"annotations": map[string]string{"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
				"labels":      labels,
			},
			"spec": map[string]any{"taints": taints},
			"status": map[string]any{
				"allocatable": map[string]string{"cpu": "4", "memory": "8Gi", "pods": "110"},
				"capacity":    map[string]string{"cpu": "4", "memory": "8Gi", "pods": "110"},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		return "---\n" + string(b)
	}
	t.Fatal("kind/cluster.yaml has no control-plane node")
	return ""
}

// persistentVolumes stand in for a storage provisioner: the controller
// manager binds the StatefulSets' claims to them.
func persistentVolumes(n int, dir string) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv-%[1]d}
spec:
  capacity: {storage: 5Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: %[2]q}
`, i, filepath.Join(dir, fmt.Sprintf("pv-%d", i)))
	}
	return b.String()
}

func serverVersion(t *testing.T, cp *controlplane.ControlPlane) string {
	out, err := k8s.RunKubectlAndGetOutputE(t, k8s.NewKubectlOptions("", cp.Kubeconfig, ""), "version", "-o", "json")
	if err != nil {
		return "unknown: " + err.Error()
	}
	var v struct {
		ServerVersion struct{ GitVersion string } `json:"serverVersion"`
	}
	_ = json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &v)
	return v.ServerVersion.GitVersion
}

func logf(t *testing.T, format string, args ...any) { logger.Terratest.Logf(t, format, args...) }

func init() { logger.Default = logger.Discard }
