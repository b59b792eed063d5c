// Command switchboard-local runs Switchboard's local target (`make up`):
// NGINX (ip_hash) in front of three chat server instances, Redis, PostgreSQL,
// Prometheus and Alertmanager, as processes on this machine.
// Ctrl-C stops all of it; a run after a crash cleans up what was left.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/switchboard-dev/switchboard/app/auth"
	"github.com/switchboard-dev/switchboard/app/config"
	"github.com/switchboard-dev/switchboard/app/local"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "switchboard-local:", err)
		os.Exit(1)
	}
}

func run() error {
	dir := flag.String("state", ".state", "directory for data, logs and pids")
	bin := flag.String("bin", "bin/chatserver", "the chatserver binary")
	ports := flag.String("chat-ports", "8081,8082,8083", "one chat instance per port")
	nginxPort := flag.Int("nginx-port", 8080, "NGINX port, the address clients use")
	promPort := flag.Int("prometheus-port", 9090, "Prometheus port")
	amPort := flag.Int("alertmanager-port", 9093, "Alertmanager port")
	var webhooks []string
	flag.Func("alert-webhook", "a webhook URL Alertmanager also notifies of every alert, firing and resolved (repeatable)", func(v string) error {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("want an http:// or https:// URL")
		}
		webhooks = append(webhooks, v)
		return nil
	})
	redisPort := flag.Int("redis-port", 6390, "Redis port")
	pgPort := flag.Int("postgres-port", 5433, "PostgreSQL port")
	nginxWorkers := flag.Int("nginx-workers", 0, "NGINX worker processes; 0: the default (2)")
	sentinel := flag.Bool("sentinel", false, "run Redis as a primary and a replica behind three redis-sentinel; the instances use redis+sentinel://")
	cluster := flag.Int("redis-cluster", 0, "run a Redis Cluster of this many primaries (at least 3), each with a replica, on -redis-port and the ports after it; the instances use redis+cluster://")
	debugPorts := flag.String("debug-ports", "", "one port per instance for pprof (DEBUG_ADDR); none by default")
	flag.Parse()
	secret := envOr("JWT_SECRET", config.DevSecret)
	env := []string{"JWT_SECRET=" + secret}
	if secret == config.DevSecret {
		env = append(env, "ALLOW_DEV_SECRET=true") // the servers refuse it otherwise
	}
	chatPorts, err := portList("-chat-ports", *ports)
	if err != nil {
		return err
	}
	if len(chatPorts) == 0 {
		return fmt.Errorf("-chat-ports: want at least one port")
	}
	pprofPorts, err := portList("-debug-ports", *debugPorts)
	if err != nil {
		return err
	}
	if len(pprofPorts) > 0 && len(pprofPorts) != len(chatPorts) {
		return fmt.Errorf("-debug-ports=%q: want one port per instance (%d)", *debugPorts, len(chatPorts))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	top, err := local.Up(ctx, local.Options{
		Dir: *dir, Bin: *bin, RedisPort: *redisPort, PostgresPort: *pgPort, ChatPorts: chatPorts,
		NginxPort: *nginxPort, NginxWorkers: *nginxWorkers, Sentinel: *sentinel, RedisCluster: *cluster, DebugPorts: pprofPorts, PrometheusPort: *promPort,
		AlertmanagerPort: *amPort, AlertWebhooks: webhooks, AlertOut: os.Stdout,
		Env: append(env, "ALLOWED_ORIGINS="+envOr("ALLOWED_ORIGINS", origins(append([]int{*nginxPort}, chatPorts...)))),
	})
	if err != nil {
		return err
	}
	tok, err := auth.Mint([]byte(secret), "alice", 24*time.Hour)
	if err != nil {
		top.Down()
		return err
	}
	fmt.Printf("\nSwitchboard local target is up (logs in %s/).\n", *dir)
	fmt.Printf("  chat (nginx, ip_hash)  %s   (ws: %s/ws)\n", top.Nginx.URL(), strings.Replace(top.Nginx.URL(), "http", "ws", 1))
	for _, c := range top.Chats {
		fmt.Printf("  %-22s %s   (ready: %s/ready, metrics: %s/metrics)\n", c.ID, c.URL(), c.URL(), c.URL())
	}
	fmt.Printf("  %-22s %s\n  %-22s %s\n  %-22s %s\n", "prometheus", top.Prometheus.URL(), "redis", top.RedisURL(), "postgres", top.Postgres.URL())
	fmt.Printf("  %-22s %s   (amtool --alertmanager.url=%s alert query)\n", "alertmanager", top.Alertmanager.URL(), top.Alertmanager.URL())
	fmt.Printf("  %-22s %s and this terminal%s\n", "alert notifications", top.AlertLog.Path, plusWebhooks(webhooks))
	fmt.Printf("\nToken for alice (24 h; more with: make token USER_NAME=bob):\n  %s\n", tok)
	fmt.Printf("Try it in a browser: http://localhost:%d/#token=%s\n\nCtrl-C stops everything.\n", *nginxPort, tok)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	fmt.Println("\nstopping: Prometheus and Alertmanager, draining the chat instances, then NGINX, Postgres and Redis…")
	return top.Down()
}

func plusWebhooks(w []string) string {
	if len(w) == 0 {
		return ""
	}
	return ", and to " + strings.Join(w, ", ")
}

// portList reads a flag's comma-separated ports; empty is none.
func portList(name, value string) ([]int, error) {
	var ports []int
	for _, p := range strings.Split(value, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%s=%q: want comma-separated port numbers", name, value)
		}
		ports = append(ports, n)
	}
	return ports, nil
}

func origins(ports []int) string {
	var o []string
	for _, p := range ports {
		o = append(o, "http://localhost:"+strconv.Itoa(p), "http://127.0.0.1:"+strconv.Itoa(p))
	}
	return strings.Join(o, ",")
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
