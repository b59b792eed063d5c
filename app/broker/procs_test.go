package broker_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/app/local"
)

// redisServer is a redis-server (or redis-sentinel) process the test owns.
type redisServer struct {
	t    testing.TB
	Port int
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// startRedis starts redis-server on a free port with its data in a directory
// of its own; args are extra options (e.g. --replicaof).
func startRedis(t testing.TB, args ...string) *redisServer {
	t.Helper()
	port, err := local.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	r := &redisServer{t: t, Port: port, dir: t.TempDir()}
	r.start(args...)
	return r
}

func (r *redisServer) start(args ...string) {
	r.t.Helper()
	r.spawn("redis-server", append([]string{"--bind", "127.0.0.1", "--port", strconv.Itoa(r.Port), "--dir", r.dir,
		"--save", "", "--appendonly", "no", "--protected-mode", "no"}, args...)...)
}

func (r *redisServer) spawn(bin string, args ...string) {
	r.t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("start %s (apt-get install -y redis-server redis-sentinel): %v", bin, err)
	}
	r.cmd, r.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(r.done)
	r.t.Cleanup(r.kill)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
	defer c.Close()
	for c.Ping(ctx).Err() != nil {
		select {
		case <-r.done:
			r.t.Fatalf("%s on port %d exited at start", bin, r.Port)
		case <-ctx.Done():
			r.t.Fatalf("%s on port %d does not answer", bin, r.Port)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// kill ends the process at once (SIGKILL): no shutdown save.
func (r *redisServer) kill() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	<-r.done
	r.cmd = nil
}

func (r *redisServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.Port) }
func (r *redisServer) URL() string  { return "redis://" + r.Addr() + "/0" }

// client is a plain client to this server for the test's own checks.
func (r *redisServer) client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.Addr()})
	r.t.Cleanup(func() { c.Close() })
	return c
}

// startSentinel starts redis-sentinel monitoring master as "mymaster".
func startSentinel(t testing.TB, master *redisServer) *redisServer {
	t.Helper()
	port, err := local.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	s := &redisServer{t: t, Port: port, dir: t.TempDir()}
	conf := filepath.Join(s.dir, "sentinel.conf")
	body := fmt.Sprintf("port %d\nbind 127.0.0.1\nprotected-mode no\ndir %s\n"+
		"sentinel monitor mymaster 127.0.0.1 %d 2\n"+
		"sentinel down-after-milliseconds mymaster 1000\n"+
		"sentinel failover-timeout mymaster 10000\n"+
		"sentinel parallel-syncs mymaster 1\n", port, s.dir, master.Port)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	s.spawn("redis-sentinel", conf)
	return s
}
