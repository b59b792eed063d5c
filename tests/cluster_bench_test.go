package tests

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/app/local"
)

// TestRedisClusterCPUPerSend (issue 29) measures what a send costs Redis in
// each form one instance can use: one standalone Redis, the same with a
// replica (what a cluster's shard carries besides its sends), and a
// cluster of 3 primaries with a replica each (local.StartCluster). The same
// load on each: 1000 rooms at the pinned comparison's table rate, 1,500
// sends/s, of 2 members each (what a send costs Redis does not depend on
// the members: one instance subscribes; 2 rather than 10 leave chatload and
// the instance light enough that a shared machine sustains the rate),
// pinned as the comparison pins (the instance alone on CPU 1, chatload and every
// datastore on CPU 0); the forms alternate, cpuRounds runs each. Redis CPU
// per acked send is each redis-server's user+system time from /proc over
// the publishing window (chatload -pids) divided by the sends chatload saw
// acked; INFO commandstats splits the sends by shard (one PUBLISH or
// SPUBLISH per message) and counts the script runs and persist reads.
// Figures are reported, not asserted.
func TestRedisClusterCPUPerSend(t *testing.T) {
	b := newBench(t)
	forms := []*redisForm{
		startRedisForm(t, b, "standalone", 0),
		startRedisForm(t, b, "standalone + replica", 1),
		startRedisForm(t, b, "cluster 3 × 2", 3),
	}
	const cpuRounds = 2
	args := []string{"-conns", "2000", "-rooms", "1000", "-publishers", "1000", "-connect-rate", "3000",
		"-rate", "1500", "-duration", "20s", "-drain", "10s"}
	load := loadAverage()
	b.cpu = loadCPU
	var lines []string
	for round := range cpuRounds {
		for _, f := range forms {
			lines = append(lines, f.measure(t, b, fmt.Sprintf("%s, run %d", f.name, round+1), args))
		}
	}
	report.Logf(t, "Redis CPU per send, 1000 rooms × 2 at 1,500 msg/s, 64-byte messages, %s:\n%s",
		machineState(load, loadAverage()), strings.Join(lines, "\n"))
}

// redisForm is one instance on its Postgres and on one form of Redis.
type redisForm struct {
	name  string
	srv   pinnedServer // stores: the Redis nodes, then Postgres
	nodes []*local.Redis
	roles []string // "primary" or "replica", as started
}

// startRedisForm starts the instance on shards primaries with a replica
// each (a cluster), or on one Redis with replicas (0 or 1) replicas.
func startRedisForm(t *testing.T, b *bench, name string, n int) *redisForm {
	t.Helper()
	dir := filepath.Join(b.dir, strings.NewReplacer(" ", "-", "+", "", "×", "x").Replace(name))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := &redisForm{name: name}
	var url string
	if n >= 3 {
		c, err := local.StartCluster(ctx, dir, n, nil)
		if err != nil {
			t.Fatalf("start the cluster: %v", err)
		}
		t.Cleanup(func() { c.Stop(10 * time.Second) })
		primaries, err := c.Primaries(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, node := range c.Nodes {
			role := "replica"
			for _, p := range primaries {
				if p == node {
					role = "primary"
				}
			}
			f.nodes, f.roles = append(f.nodes, node), append(f.roles, role)
		}
		url = c.URL()
	} else {
		primary := startStandalone(ctx, t, filepath.Join(dir, "primary"))
		f.nodes, f.roles, url = []*local.Redis{primary}, []string{"primary"}, primary.URL()
		for i := range n {
			replica := startStandalone(ctx, t, filepath.Join(dir, fmt.Sprintf("replica-%d", i+1)))
			replicate(ctx, t, replica, primary)
			f.nodes, f.roles = append(f.nodes, replica), append(f.roles, "replica")
		}
	}
	ports := freePorts(t, 2)
	pg, err := local.StartPostgres(ctx, dir, ports[0])
	if err != nil {
		t.Fatalf("start Postgres: %v", err)
	}
	t.Cleanup(func() { pg.Stop(10 * time.Second) })
	chat, err := local.StartChat(ctx, local.ChatConfig{
		Bin: filepath.Join(b.dir, "chatserver"), Dir: dir, ID: "chat-1", Port: ports[1],
		Env: append([]string{"REDIS_URL=" + url, "DATABASE_URL=" + pg.URL(), "GOMAXPROCS=1"}, benchSettings...),
	})
	if err != nil {
		t.Fatalf("start the instance on %s: %v", name, err)
	}
	t.Cleanup(chat.Kill)
	if err := chat.WaitReady(ctx); err != nil {
		t.Fatalf("the instance on %s: %v", name, err)
	}
	f.srv = pinnedServer{name: name, endpoint: chat.URL(), ready: chat.URL() + "/ready", pid: chat.Pid()}
	pin(t, serverCPU, chat.Pid())
	for i, node := range f.nodes {
		f.srv.stores = append(f.srv.stores, store{fmt.Sprintf("%s %d", f.roles[i], i+1), node.Pid()})
		pin(t, loadCPU, node.Pid())
		// Ahead of chatload and of other work on a shared machine: a node
		// starved for cluster-node-timeout (2 s) would be failed over.
		if out, err := exec.Command("renice", "-n", "-10", "-p", strconv.Itoa(node.Pid())).CombinedOutput(); err != nil {
			t.Fatalf("renice %s: %v\n%s", node.Addr(), err, out)
		}
	}
	f.srv.stores = append(f.srv.stores, store{"Postgres", pg.Pid()})
	pin(t, loadCPU, pg.Pid())
	return f
}

func startStandalone(ctx context.Context, t *testing.T, dir string) *local.Redis {
	t.Helper()
	r, err := local.StartRedis(ctx, dir, freePorts(t, 1)[0])
	if err != nil {
		t.Fatalf("start Redis: %v", err)
	}
	t.Cleanup(r.Kill)
	return r
}

// replicate makes replica replicate primary and waits for its link.
func replicate(ctx context.Context, t *testing.T, replica, primary *local.Redis) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: replica.Addr()})
	defer c.Close()
	if err := c.SlaveOf(ctx, "127.0.0.1", strconv.Itoa(primary.Port)).Err(); err != nil {
		t.Fatalf("replicaof on %s: %v", replica.Addr(), err)
	}
	until(t, "the replica's link to its primary", time.Minute, func() error {
		info, err := replica.Info(ctx, "replication")
		if err != nil {
			return err
		}
		if info["master_link_status"] != "up" {
			return fmt.Errorf("link %q", info["master_link_status"])
		}
		return nil
	})
}

// calls are each node's calls so far, by command (INFO commandstats).
func (f *redisForm) calls(t *testing.T) []map[string]int64 {
	t.Helper()
	out := make([]map[string]int64, len(f.nodes))
	for i, n := range f.nodes {
		info, err := n.Info(context.Background(), "commandstats")
		if err != nil {
			t.Fatal(err)
		}
		out[i] = map[string]int64{}
		for k, v := range info {
			if cmd, ok := strings.CutPrefix(k, "cmdstat_"); ok {
				var calls int64
				fmt.Sscanf(v, "calls=%d", &calls)
				out[i][cmd] = calls
			}
		}
	}
	return out
}

// measure runs chatload once against f and returns its line: Redis CPU per
// acked send, in all and per node, and what each primary carried.
func (f *redisForm) measure(t *testing.T, b *bench, name string, args []string) string {
	t.Helper()
	quiesce(t, f.srv)
	b.endpoint, b.pids = f.srv.endpoint, f.srv.pidList()
	before := f.calls(t)
	rep := b.run(t, name, args...)
	after := f.calls(t)
	if len(rep.Servers) != 1+len(f.srv.stores) {
		t.Fatalf("%s: chatload measured %d processes, want %d", name, len(rep.Servers), 1+len(f.srv.stores))
	}
	if rep.Acked == 0 {
		t.Fatalf("%s: no send acked", name)
	}
	perSend := func(seconds float64) float64 { return seconds * 1e6 / float64(rep.Acked) }
	var primaries, replicas float64
	for i := range f.nodes {
		if f.roles[i] == "primary" {
			primaries += rep.Servers[1+i].CPUSeconds
		} else {
			replicas += rep.Servers[1+i].CPUSeconds
		}
	}
	var nodes []string
	for i := range f.nodes {
		cpu := rep.Servers[1+i].CPUSeconds
		if f.roles[i] == "replica" {
			nodes = append(nodes, fmt.Sprintf("%s %.1f µs", f.srv.stores[i].name, perSend(cpu)))
			continue
		}
		d := map[string]int64{}
		for cmd, n := range after[i] {
			d[cmd] = n - before[i][cmd]
		}
		sends := d["publish"] + d["spublish"]
		// The commands run most, per second: what else the node serves.
		cmds := slices.SortedFunc(maps.Keys(d), func(a, b string) int { return cmp.Compare(d[b], d[a]) })
		var busiest []string
		for _, c := range cmds[:min(5, len(cmds))] {
			busiest = append(busiest, fmt.Sprintf("%s %.0f", c, float64(d[c])/rep.Elapsed.Seconds()))
		}
		nodes = append(nodes, fmt.Sprintf("%s %.1f µs, %.1f%% of the primaries' CPU (%d sends, %.1f µs each; %.1f sends a script run; calls/s: %s)",
			f.srv.stores[i].name, perSend(cpu), 100*cpu/primaries, sends, cpu*1e6/float64(max(sends, 1)),
			float64(sends)/float64(max(d["evalsha"]+d["eval"], 1)), strings.Join(busiest, ", ")))
	}
	var void []string
	if rep.Acked < rep.Sent {
		void = append(void, fmt.Sprintf("%d sends not acked (errors %v)", rep.Sent-rep.Acked, rep.SendErrors))
	}
	for i, n := range f.nodes {
		if info, err := n.Info(context.Background(), "replication"); err != nil || (info["role"] == "master") != (f.roles[i] == "primary") {
			void = append(void, fmt.Sprintf("%s is no longer a %s (%v): failed over during the run", n.Addr(), f.roles[i], err))
		}
	}
	if len(void) > 0 {
		t.Errorf("%s: not a sustained run: %s", name, strings.Join(void, "; "))
	}
	pgCPU := rep.Servers[len(rep.Servers)-1].CPUSeconds
	return fmt.Sprintf("  %s: %d acked (%.0f/s), lost %d; Redis CPU per send: primaries %.1f µs, replicas %.1f µs; "+
		"instance %.1f µs, Postgres %.1f µs\n    %s",
		name, rep.Acked, float64(rep.Acked)/rep.Elapsed.Seconds(), rep.Lost(), perSend(primaries), perSend(replicas),
		perSend(rep.Servers[0].CPUSeconds), perSend(pgCPU), strings.Join(nodes, "\n    "))
}
