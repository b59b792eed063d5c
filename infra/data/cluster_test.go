package data

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// node is one redis-server started as the StatefulSet's pods start it:
// node.sh with clusterNodeArgs, announcing the name localhost.
type node struct {
	dir  string
	port int
	cmd  *exec.Cmd
}

func (n *node) addr() string { return fmt.Sprintf("127.0.0.1:%d", n.port) }

func (n *node) start(t *testing.T) {
	t.Helper()
	args := append([]string{"-c", nodeScript, "redis-node"}, clusterNodeArgs(n.dir, "localhost", n.port)...)
	args = append(args, "--bind", "127.0.0.1", "--save", "")
	n.cmd = exec.Command("sh", args...)
	n.cmd.Env = append(os.Environ(), "CLUSTER_CONFIG="+filepath.Join(n.dir, "nodes.conf"))
	log, err := os.Create(filepath.Join(n.dir, "redis.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	n.cmd.Stdout, n.cmd.Stderr = log, log
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("start redis on %d: %v", n.port, err)
	}
	c := redis.NewClient(&redis.Options{Addr: n.addr()})
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); c.Ping(context.Background()).Err() != nil; {
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(filepath.Join(n.dir, "redis.log"))
			t.Fatalf("redis on %d does not answer: %s", n.port, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The server answering is the one just started, not one left running.
	info, err := c.Info(context.Background(), "server").Result()
	if want := fmt.Sprintf("process_id:%d\r", n.cmd.Process.Pid); err != nil || !strings.Contains(info, want) {
		t.Fatalf("the redis on %d is not the one started (pid %d): %v", n.port, n.cmd.Process.Pid, err)
	}
}

func (n *node) stop() {
	if n.cmd != nil && n.cmd.Process != nil {
		_ = n.cmd.Process.Kill()
		_ = n.cmd.Wait()
	}
}

// freePorts are ports p with p and its cluster bus port p+10000 free.
func freePorts(t *testing.T, n int) []int {
	var out []int
	for p := 21000 + os.Getpid()%4000; len(out) < n && p < 30000; p++ {
		ok := true
		for _, q := range []int{p, p + 10000} {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", q))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			out = append(out, p)
		}
	}
	if len(out) < n {
		t.Fatalf("%d free port pairs, want %d", len(out), n)
	}
	return out
}

func startNodes(t *testing.T, count int) []*node {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server is missing: `make deps` installs it")
	}
	var nodes []*node
	for _, p := range freePorts(t, count) {
		n := &node{dir: t.TempDir(), port: p}
		n.start(t)
		t.Cleanup(n.stop)
		nodes = append(nodes, n)
	}
	return nodes
}

// create runs the creation Job's script on nodes, as the Job does.
func create(t *testing.T, nodes []*node, replicas int) (string, error) {
	var names []string
	for _, n := range nodes {
		names = append(names, fmt.Sprintf("localhost:%d", n.port))
	}
	cmd := exec.Command("sh", "-c", createScript)
	cmd.Env = append(os.Environ(), "NODES="+strings.Join(names, " "), fmt.Sprintf("REPLICAS=%d", replicas))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// clusterInfo is CLUSTER INFO of a node as a map, and its node id.
func clusterInfo(t *testing.T, n *node) (map[string]string, string) {
	c := redis.NewClient(&redis.Options{Addr: n.addr()})
	defer c.Close()
	ctx := context.Background()
	raw, err := c.ClusterInfo(ctx).Result()
	if err != nil {
		t.Fatalf("cluster info of %d: %v", n.port, err)
	}
	info := map[string]string{}
	for _, line := range strings.Split(raw, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			info[k] = v
		}
	}
	id, err := c.ClusterMyID(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	return info, id
}

// peersReached says whether a node reaches every other node on the cluster
// bus at its current address (127.0.0.1), knowing its hostname: per CLUSTER
// NODES, each peer's address, no ping left unanswered, no failure flag. The
// state alone turns ok from the loaded nodes.conf, before any link fails,
// and a link being dialled counts as connected.
func peersReached(t *testing.T, n *node, count int) (bool, string) {
	c := redis.NewClient(&redis.Options{Addr: n.addr()})
	defer c.Close()
	raw, err := c.ClusterNodes(context.Background()).Result()
	if err != nil {
		t.Fatalf("cluster nodes of %d: %v", n.port, err)
	}
	peers := 0
	for _, line := range strings.Split(strings.TrimSpace(raw), "\n") {
		// <id> <ip:port@cport[,hostname]> <flags> <primary> <ping-sent> <pong-recv> <epoch> <link-state> <slot>...
		f := strings.Fields(line)
		if len(f) < 8 || strings.Contains(f[2], "myself") {
			continue
		}
		if !strings.HasPrefix(f[1], "127.0.0.1:") || !strings.HasSuffix(f[1], ",localhost") || f[4] != "0" || strings.Contains(f[2], "fail") {
			return false, raw
		}
		peers++
	}
	return peers == count-1, raw
}

// waitOK waits until every node reports the cluster ok and reaches every
// other node.
func waitOK(t *testing.T, nodes []*node, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for _, n := range nodes {
		for {
			info, _ := clusterInfo(t, n)
			reached, view := peersReached(t, n, len(nodes))
			if info["cluster_state"] == "ok" && reached {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d after %s: cluster_state %s, its view:\n%s", n.port, within, info["cluster_state"], view)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// The Job's script on six real Redis nodes started as the pods start them:
// it makes a cluster of 3 primaries with a replica each, that clients are
// redirected through by hostname; run again, it does nothing; and after
// every node restarts with the others' addresses stale in its nodes.conf
// (pods that all restart get new IPs), the nodes find each other again by
// name, with the same identities.
func TestClusterIsCreatedOnceAndSurvivesEveryNodeRestarting(t *testing.T) {
	nodes := startNodes(t, 6)
	start := time.Now()
	out, err := create(t, nodes, 1)
	if err != nil {
		t.Fatalf("create: %v\n%s", err, out)
	}
	waitOK(t, nodes, 30*time.Second)
	t.Logf("cluster created and ok in %s", time.Since(start).Round(10*time.Millisecond))
	ids := map[int]string{}
	primaries := 0
	for _, n := range nodes {
		info, id := clusterInfo(t, n)
		ids[n.port] = id
		if info["cluster_slots_assigned"] != "16384" || info["cluster_size"] != "3" {
			t.Errorf("node %d: %s slots over %s shards, want 16384 over 3", n.port, info["cluster_slots_assigned"], info["cluster_size"])
		}
		c := redis.NewClient(&redis.Options{Addr: n.addr()})
		role, err := c.Do(context.Background(), "ROLE").Slice()
		c.Close()
		if err == nil && role[0] == "master" {
			primaries++
		}
	}
	if primaries != 3 {
		t.Errorf("%d primaries, want 3", primaries)
	}

	// Clients are sent to hostnames (waitOK saw every node know the
	// others'), which survive an address change; a cluster client's
	// writes follow the redirects.
	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{nodes[0].addr()}})
	for i := range 30 {
		if err := rc.Set(context.Background(), fmt.Sprintf("room:%d", i), i, 0).Err(); err != nil {
			t.Fatalf("a cluster client's write through the redirects: %v", err)
		}
	}
	rc.Close()

	out, err = create(t, nodes, 1)
	if err != nil || !strings.Contains(out, "nothing to do") {
		t.Errorf("a second run: %v\n%s\nwant it to find the cluster and do nothing", err, out)
	}
	for _, n := range nodes {
		if _, id := clusterInfo(t, n); id != ids[n.port] {
			t.Errorf("node %d is %s after the second run, was %s", n.port, id, ids[n.port])
		}
	}

	// Every node down; each nodes.conf then holds the others at an
	// address that no longer answers (TEST-NET-1), as after new pod IPs.
	for _, n := range nodes {
		n.stop()
	}
	for _, n := range nodes {
		conf := filepath.Join(n.dir, "nodes.conf")
		b, err := os.ReadFile(conf)
		if err != nil {
			t.Fatal(err)
		}
		stale := strings.ReplaceAll(string(b), "127.0.0.1:", "192.0.2.1:")
		if stale == string(b) {
			t.Fatalf("nodes.conf of %d has no 127.0.0.1 address to make stale:\n%s", n.port, b)
		}
		if err := os.WriteFile(conf, []byte(stale), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	restarted := time.Now()
	for _, n := range nodes {
		n.start(t)
	}
	waitOK(t, nodes, 60*time.Second)
	t.Logf("every node restarted with stale peer addresses: cluster ok again in %s", time.Since(restarted).Round(10*time.Millisecond))
	for _, n := range nodes {
		if _, id := clusterInfo(t, n); id != ids[n.port] {
			t.Errorf("node %d is %s after the restart, was %s: its identity was lost", n.port, id, ids[n.port])
		}
	}
	rc = redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{nodes[3].addr()}})
	defer rc.Close()
	for i := range 30 {
		if v, err := rc.Get(context.Background(), fmt.Sprintf("room:%d", i)).Int(); err != nil || v != i {
			t.Errorf("room:%d after the restart: %v, %v", i, v, err)
		}
	}
}

// A node that is in a cluster that is not ok is not created over: the Job
// fails, naming it.
func TestCreationRefusesANodeOfAClusterThatIsNotOK(t *testing.T) {
	nodes := startNodes(t, 4)
	// Two nodes met, no slot assigned: a cluster begun and left unfinished.
	c := redis.NewClient(&redis.Options{Addr: nodes[0].addr()})
	defer c.Close()
	if err := c.ClusterMeet(context.Background(), "127.0.0.1", fmt.Sprint(nodes[1].port)).Err(); err != nil {
		t.Fatal(err)
	}
	out, err := create(t, nodes[:3], 0)
	if err == nil || !strings.Contains(out, "not creating over it") {
		t.Errorf("create over a half-made cluster: %v\n%s\nwant a refusal", err, out)
	}
	if info, _ := clusterInfo(t, nodes[2]); info["cluster_known_nodes"] != "1" {
		t.Errorf("the empty node joined something: %v", info)
	}
}
