package target

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-dev/switchboard/app/auth"
)

// Kubernetes is a Switchboard deployed by the Pulumi program (the dev stack
// on kind, or prod on EKS), reached through its load balancer and driven
// through kubectl: an instance is a chat pod, killing it deletes the pod at
// once, and a replacement pod takes its place.
type Kubernetes struct {
	endpoint string
	kubectl  []string // kubectl with its --context and --namespace
	secret   []byte
	mu       sync.Mutex
	forwards map[string]*forward // pod → its port-forward
	stopped  map[string]int      // StatefulSet → its pods before stop
}

// KubernetesOptions locate the deployment.
type KubernetesOptions struct {
	Endpoint    string // the load balancer: http://localhost:8080 on kind
	KubeContext string
	Namespace   string
	JWTSecret   string // the stack's switchboard:jwtSecret
}

// NewKubernetes returns the target for a deployed stack.
func NewKubernetes(o KubernetesOptions) *Kubernetes {
	return &Kubernetes{
		endpoint: o.Endpoint,
		kubectl:  []string{"--context", o.KubeContext, "--namespace", o.Namespace},
		secret:   []byte(o.JWTSecret),
		forwards: map[string]*forward{},
		stopped:  map[string]int{},
	}
}

func (k *Kubernetes) Endpoint() string { return k.endpoint }
func (k *Kubernetes) Origin() string   { return k.endpoint }

func (k *Kubernetes) Token(user string, ttl time.Duration) (string, error) {
	return auth.Mint(k.secret, user, ttl)
}

func (k *Kubernetes) run(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "kubectl", append(k.kubectl, args...)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// pods lists the running chat pods that are not terminating, ready or not:
// NGINX sends clients to every one of them (the headless Service publishes
// unready pods), and a scenario that waits for the instances to go unready
// and back must see them meanwhile.
func (k *Kubernetes) pods(ctx context.Context) ([]string, error) {
	out, err := k.run(ctx, "get", "pods", "-l", "app.kubernetes.io/name=chat",
		"-o", `jsonpath={range .items[?(@.status.phase=="Running")]}{.metadata.name} {.metadata.deletionTimestamp}{"\n"}{end}`)
	if err != nil {
		return nil, err
	}
	var pods []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		// A terminating pod's line carries its deletionTimestamp.
		if f := strings.Fields(line); len(f) == 1 {
			pods = append(pods, f[0])
		}
	}
	return pods, nil
}

// Instances lists the chat pods, each reached through a port-forward.
func (k *Kubernetes) Instances(ctx context.Context) ([]Instance, error) {
	pods, err := k.pods(ctx)
	if err != nil {
		return nil, err
	}
	var is []Instance
	for _, p := range pods {
		f, err := k.forward(p)
		if err != nil {
			return nil, err
		}
		is = append(is, Instance{ID: p, URL: f.url})
	}
	return is, nil
}

// Kill deletes the pod without a grace period.
func (k *Kubernetes) Kill(ctx context.Context, id string) error {
	k.forget(id)
	_, err := k.run(ctx, "delete", "pod", id, "--grace-period=0", "--force", "--wait=true")
	return err
}

// Start waits for the Deployment to replace the killed pod: on Kubernetes
// the instance comes back under a new name.
func (k *Kubernetes) Start(ctx context.Context, _ string) error {
	_, err := k.run(ctx, "rollout", "status", "deployment/chat", "--timeout=5m")
	return err
}

// RollingUpdate is `kubectl rollout restart`: the Deployment replaces its
// pods under its rolling-update strategy, each old pod going through its
// preStop hook and drain. The rollout counts as complete once the new pods
// are available, while the old ones may still be draining their clients, so
// it returns only once every old pod is gone. Kubernetes does not say how
// long each drain took.
func (k *Kubernetes) RollingUpdate(ctx context.Context) ([]time.Duration, error) {
	old, err := k.pods(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := k.run(ctx, "rollout", "restart", "deployment/chat"); err != nil {
		return nil, err
	}
	if err := k.Start(ctx, ""); err != nil {
		return nil, err
	}
	for _, pod := range old {
		k.forget(pod)
		if _, err := k.run(ctx, "wait", "--for=delete", "pod/"+pod, "--timeout=5m"); err != nil && !strings.Contains(err.Error(), "NotFound") {
			return nil, err
		}
	}
	return nil, nil
}

// DrainNode drains the worker holding the most ready chat pods with `kubectl
// drain` (evictions, which honour the PodDisruptionBudget), waits for the
// Deployment to be available without it and uncordons it.
func (k *Kubernetes) DrainNode(ctx context.Context) (node string, err error) {
	out, err := k.run(ctx, "get", "pods", "-l", "app.kubernetes.io/name=chat",
		"-o", `jsonpath={range .items[?(@.status.containerStatuses[0].ready==true)]}{.metadata.name} {.spec.nodeName}{"\n"}{end}`)
	if err != nil {
		return "", err
	}
	on := map[string][]string{} // node → its pods
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		pod, n, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if on[n] = append(on[n], pod); node == "" || len(on[n]) > len(on[node]) {
			node = n
		}
	}
	if node == "" {
		return "", fmt.Errorf("drain: no ready chat pod on any node")
	}
	for _, pod := range on[node] {
		k.forget(pod)
	}
	defer func() { // whatever happened, the node takes pods again
		if _, uerr := k.run(context.Background(), "uncordon", node); err == nil {
			err = uerr
		}
	}()
	if _, err := k.run(ctx, "drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=5m"); err != nil {
		return node, err
	}
	if err := k.Start(ctx, ""); err != nil {
		return node, fmt.Errorf("chat pods while %s is drained: %w", node, err)
	}
	return node, nil
}

// stop scales a StatefulSet to no pod, keeping how many it had for start,
// and waits for every one of its pods to go.
func (k *Kubernetes) stop(ctx context.Context, set string) error {
	out, err := k.run(ctx, "get", "statefulset/"+set, "-o", "jsonpath={.spec.replicas}")
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		return fmt.Errorf("statefulset/%s replicas %q: %w", set, out, err)
	}
	if n == 0 {
		return fmt.Errorf("stop statefulset/%s: it has no pods already", set)
	}
	k.mu.Lock()
	k.stopped[set] = n
	k.mu.Unlock()
	if _, err := k.run(ctx, "scale", "statefulset/"+set, "--replicas=0"); err != nil {
		return err
	}
	for i := range n {
		_, err := k.run(ctx, "wait", "--for=delete", fmt.Sprintf("pod/%s-%d", set, i), "--timeout=2m")
		if err != nil && !strings.Contains(err.Error(), "NotFound") {
			return err
		}
	}
	return nil
}

// start scales a StatefulSet that stop stopped back to its pods.
func (k *Kubernetes) start(ctx context.Context, set string) error {
	k.mu.Lock()
	n, ok := k.stopped[set]
	delete(k.stopped, set)
	k.mu.Unlock()
	if !ok {
		return fmt.Errorf("start statefulset/%s: this target did not stop it, so how many pods it had is unknown", set)
	}
	if _, err := k.run(ctx, "scale", "statefulset/"+set, fmt.Sprintf("--replicas=%d", n)); err != nil {
		return err
	}
	_, err := k.run(ctx, "rollout", "status", "statefulset/"+set, "--timeout=5m")
	return err
}

// StopRedis stops every Redis pod: the one of the standalone form, or the
// shards × (1 + replicas) of a Redis Cluster (redisMode: cluster).
func (k *Kubernetes) StopRedis(ctx context.Context) error { return k.stop(ctx, "redis") }

// StartRedis starts them again on their volumes; a cluster once it is
// healthy, as on the local target (app/local's WaitHealthy): a send waits
// for a replica's ack (REDIS_MIN_REPLICAS), so cluster_state:ok, which a
// primary reports before its replica has synced again, is not enough.
func (k *Kubernetes) StartRedis(ctx context.Context) error {
	k.mu.Lock()
	n := k.stopped["redis"]
	k.mu.Unlock()
	if err := k.start(ctx, "redis"); err != nil || n == 1 {
		return err
	}
	for i := range n {
		pod := "redis-" + strconv.Itoa(i)
		for {
			out, err := k.run(ctx, "exec", pod, "--", "sh", "-c", "redis-cli cluster info && redis-cli info replication")
			if err == nil {
				err = clusterNodeHealthy(out, n)
			}
			if err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("redis cluster after its restart: %s: %w (%w)", pod, err, ctx.Err())
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

// clusterNodeHealthy reads a node's CLUSTER INFO and INFO replication: the
// cluster ok with every slot served, all n nodes known, and a replica's
// link to its primary up.
func clusterNodeHealthy(info string, n int) error {
	f := map[string]string{}
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			f[k] = v
		}
	}
	switch {
	case f["cluster_state"] != "ok" || f["cluster_slots_ok"] != "16384" || f["cluster_known_nodes"] != strconv.Itoa(n):
		return fmt.Errorf("state %q, %q slots ok, knows %q of %d nodes", f["cluster_state"], f["cluster_slots_ok"], f["cluster_known_nodes"], n)
	case f["role"] == "slave" && f["master_link_status"] != "up":
		return fmt.Errorf("a replica whose link to its primary is %q", f["master_link_status"])
	}
	return nil
}

func (k *Kubernetes) StopPostgres(ctx context.Context) error  { return k.stop(ctx, "postgres") }
func (k *Kubernetes) StartPostgres(ctx context.Context) error { return k.start(ctx, "postgres") }

// Close ends the port-forwards.
func (k *Kubernetes) Close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for p, f := range k.forwards {
		f.stop()
		delete(k.forwards, p)
	}
}

func (k *Kubernetes) forget(pod string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if f := k.forwards[pod]; f != nil {
		f.stop()
		delete(k.forwards, pod)
	}
}

// forward is a kubectl port-forward to one pod's port 8080.
type forward struct {
	url  string
	stop func()
}

var forwarding = regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+)`)

func (k *Kubernetes) forward(pod string) (*forward, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if f := k.forwards[pod]; f != nil {
		return f, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "kubectl", append(k.kubectl, "port-forward", "pod/"+pod, "--address", "127.0.0.1", ":8080")...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("port-forward %s: %w", pod, err)
	}
	stop := func() { cancel(); _ = cmd.Wait() }
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		if m := forwarding.FindStringSubmatch(lines.Text()); m != nil {
			go func() {
				for lines.Scan() { // keep draining so kubectl never blocks on its output
				}
			}()
			f := &forward{url: "http://127.0.0.1:" + m[1], stop: stop}
			k.forwards[pod] = f
			return f, nil
		}
	}
	stop()
	return nil, fmt.Errorf("port-forward %s: kubectl ended without forwarding", pod)
}
