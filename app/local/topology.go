package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Options describes a local topology. Zero ports are free ports.
type Options struct {
	Dir       string // state: data, logs and the pid file; reused across runs
	Bin       string // the chatserver binary
	RedisPort int    // redis-server
	// Sentinel adds a replica and three redis-sentinel processes; the
	// instances then reach Redis through the sentinels (redis+sentinel://).
	Sentinel    bool
	ReplicaPort int // the replica (with Sentinel)
	// RedisCluster > 0 runs a Redis Cluster of that many primaries (at
	// least 3), each with a replica, on RedisPort and the ports after it
	// (free ports when RedisPort is 0), instead of the one Redis; the
	// instances then use redis+cluster://.
	RedisCluster   int
	SentinelPorts  []int         // the three sentinels (with Sentinel)
	PostgresPort   int           // PostgreSQL 15
	ChatPorts      []int         // one instance per entry (0: a free port)
	NginxPort      int           // the load balancer clients use
	NginxWorkers   int           // NGINX worker processes (2)
	DebugPorts     []int         // pprof port of each instance, in ChatPorts' order (none)
	PrometheusPort int           // Prometheus scraping the instances
	ScrapeInterval time.Duration // Prometheus scrape and rule interval (5s)
	// Alertmanager receives Prometheus's alerts and notifies the alert log
	// (alerts.jsonl in Dir, AlertOut) and AlertWebhooks, firing and
	// resolved, batched as AlertTiming says.
	AlertmanagerPort int
	AlertLogPort     int      // the alert log's webhook server (a free port)
	AlertWebhooks    []string // more webhook receivers of every alert
	AlertTiming      AlertTiming
	AlertOut         io.Writer // each alert notified, as a line of text (none)
	Env              []string  // settings for every instance (JWT_SECRET, ...)
	// InstanceEnv adds settings to single instances, in ChatPorts' order,
	// after Env (so they win): a topology can mix configurations.
	InstanceEnv [][]string
}

// Topology is a running local target: NGINX (ip_hash) in front of the chat
// instances, Redis, Postgres, Prometheus and its Alertmanager.
type Topology struct {
	Redis      *Redis   // the primary at start; nil with a cluster
	Cluster    *Cluster // with Options.RedisCluster
	Replica    *Redis   // with Options.Sentinel
	Sentinels  []*Sentinel
	Postgres   *Postgres
	Chats      []*Chat
	Nginx      *Nginx
	Prometheus *Prometheus
	// Alertmanager routes every alert to the alert log and the webhooks.
	Alertmanager *Alertmanager
	AlertLog     *AlertLog
	dir          string
}

// Up starts the whole topology. Processes left by a previous run that
// crashed (listed in the pid file) are killed first. On error, what was
// started is stopped again.
func Up(ctx context.Context, opts Options) (t *Topology, err error) {
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	killStale(opts.Dir)
	if opts.ScrapeInterval == 0 {
		opts.ScrapeInterval = 5 * time.Second
	}
	t = &Topology{dir: opts.Dir}
	defer func() {
		if err != nil {
			t.Down()
			t = nil
		}
	}()
	switch {
	case opts.RedisCluster > 0 && opts.Sentinel:
		return t, fmt.Errorf("a Redis Cluster fails over by itself: Sentinel and RedisCluster exclude each other")
	case opts.RedisCluster > 0:
		var ports []int
		for i := range 2 * opts.RedisCluster {
			if opts.RedisPort != 0 {
				ports = append(ports, opts.RedisPort+i)
			}
		}
		if t.Cluster, err = StartCluster(ctx, opts.Dir, opts.RedisCluster, ports); err != nil {
			return t, err
		}
	default:
		if t.Redis, err = StartRedis(ctx, opts.Dir, portOr(opts.RedisPort)); err != nil {
			return t, err
		}
	}
	if opts.Sentinel {
		if err = t.startSentinels(ctx, opts.Dir, opts.ReplicaPort, opts.SentinelPorts); err != nil {
			return t, err
		}
	}
	if t.Postgres, err = StartPostgres(ctx, opts.Dir, portOr(opts.PostgresPort)); err != nil {
		return t, err
	}
	var addrs []string
	for i, port := range opts.ChatPorts {
		debug := 0
		if i < len(opts.DebugPorts) {
			debug = opts.DebugPorts[i]
		}
		// NGINX reaches the instances from its upstream sources: they are the
		// proxy whose X-Forwarded-For names the client (opts.Env may override).
		env := append([]string{"REDIS_URL=" + t.RedisURL(), "DATABASE_URL=" + t.Postgres.URL(), "TRUSTED_PROXIES=" + strings.Join(upstreamSources, ",")}, opts.Env...)
		if i < len(opts.InstanceEnv) {
			env = append(env, opts.InstanceEnv[i]...)
		}
		c, err := StartChat(ctx, ChatConfig{
			Bin: opts.Bin, Dir: opts.Dir, ID: fmt.Sprintf("chat-%d", i+1), Port: portOr(port), DebugPort: debug, Env: env,
		})
		if err != nil {
			return t, err
		}
		t.Chats = append(t.Chats, c)
		addrs = append(addrs, c.Addr())
	}
	if t.Nginx, err = StartNginx(ctx, opts.Dir, portOr(opts.NginxPort), opts.NginxWorkers, addrs); err != nil {
		return t, err
	}
	if t.AlertLog, err = StartAlertLog(opts.Dir, opts.AlertLogPort, opts.AlertOut); err != nil {
		return t, err
	}
	if t.Alertmanager, err = StartAlertmanager(ctx, opts.Dir, portOr(opts.AlertmanagerPort), opts.AlertTiming, t.AlertLog.URL(), opts.AlertWebhooks); err != nil {
		return t, err
	}
	if t.Prometheus, err = StartPrometheus(ctx, opts.Dir, portOr(opts.PrometheusPort), addrs, opts.ScrapeInterval, t.Alertmanager.Addr()); err != nil {
		return t, err
	}
	return t, nil
}

// Chat is the instance with the given INSTANCE_ID.
func (t *Topology) Chat(id string) (*Chat, error) {
	for _, c := range t.Chats {
		if c.ID == id {
			return c, nil
		}
	}
	return nil, fmt.Errorf("no instance %q in the local target", id)
}

// Down stops Prometheus and Alertmanager, drains the instances (all at
// once), then stops NGINX, Postgres, the sentinels and Redis: NGINX
// outlives the instances so that their 1001 close frames reach the clients.
func (t *Topology) Down() error {
	var errs []error
	if t.Prometheus != nil {
		errs = append(errs, t.Prometheus.Stop(10*time.Second))
	}
	if t.Alertmanager != nil {
		errs = append(errs, t.Alertmanager.Stop(10*time.Second))
	}
	if t.AlertLog != nil {
		errs = append(errs, t.AlertLog.Close())
	}
	for _, c := range t.Chats {
		errs = append(errs, c.Signal(syscall.SIGTERM))
	}
	for _, c := range t.Chats {
		errs = append(errs, c.Stop(60*time.Second))
	}
	if t.Nginx != nil {
		errs = append(errs, t.Nginx.Stop(10*time.Second))
	}
	if t.Postgres != nil {
		errs = append(errs, t.Postgres.Stop(30*time.Second))
	}
	// The sentinels go first: a primary stopping under them would be
	// failed over.
	for _, s := range t.Sentinels {
		errs = append(errs, s.Stop(10*time.Second))
	}
	for _, r := range []*Redis{t.Replica, t.Redis} {
		if r != nil {
			errs = append(errs, r.Stop(10*time.Second))
		}
	}
	if t.Cluster != nil {
		errs = append(errs, t.Cluster.Stop(10*time.Second))
	}
	os.Remove(filepath.Join(t.dir, pidFile))
	return errors.Join(errs...)
}

const pidFile = "pids"

// remember appends a started process to dir's pid file, for killStale after a crash.
func remember(dir string, pid int, program string) {
	f, err := os.OpenFile(filepath.Join(dir, pidFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	fmt.Fprintf(f, "%d %s\n", pid, program)
	f.Close()
}

// killStale kills what a crashed run left behind, so its ports and data are
// free. A pid is killed only if it still runs the program recorded for it.
func killStale(dir string) {
	data, err := os.ReadFile(filepath.Join(dir, pidFile))
	if err != nil {
		return
	}
	var killed []int
	for _, line := range strings.Split(string(data), "\n") {
		var pid int
		var program string
		if _, err := fmt.Sscanf(line, "%d %s", &pid, &program); err != nil || pid <= 1 {
			continue
		}
		comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		if err != nil || strings.TrimSpace(string(comm)) != program[:min(len(program), 15)] {
			continue
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			fmt.Fprintf(os.Stderr, "local: killed %s (pid %d) left by an earlier run\n", program, pid)
			killed = append(killed, pid)
		}
	}
	// Their ports and files are free once they are gone.
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range killed {
		for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	os.Remove(filepath.Join(dir, pidFile))
	// Postgres refuses to start while its pid file names a live process; a
	// killed one leaves it behind.
	os.Remove(filepath.Join(dir, "postgres", "postmaster.pid"))
}

func portOr(p int) int {
	if p != 0 {
		return p
	}
	free, err := FreePort()
	if err != nil {
		return 0
	}
	return free
}
