package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Options describes a local topology.
type Options struct {
	Dir          string   // state: data, logs and the pid file; reused across runs
	Bin          string   // the chatserver binary
	RedisPort    int      // 0: a free port
	PostgresPort int      // 0: a free port
	ChatPorts    []int    // one instance per port
	Env          []string // settings for every instance (JWT_SECRET, ...)
}

// Topology is a running local target.
type Topology struct {
	Redis    *Redis
	Postgres *Postgres
	Chats    []*Chat
	opts     Options
}

const pidFile = "pids"

// Up starts Redis, Postgres and the chat instances. Processes left by a
// previous run that crashed (listed in the pid file) are killed first.
func Up(ctx context.Context, opts Options) (*Topology, error) {
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	killStale(opts.Dir)
	t := &Topology{opts: opts}
	var err error
	if t.Redis, err = StartRedis(ctx, opts.Dir, portOr(opts.RedisPort)); err != nil {
		return nil, err
	}
	t.record()
	if t.Postgres, err = StartPostgres(ctx, opts.Dir, portOr(opts.PostgresPort)); err != nil {
		t.Down()
		return nil, err
	}
	t.record()
	for i, port := range opts.ChatPorts {
		c, err := StartChat(ctx, ChatConfig{
			Bin: opts.Bin, Dir: opts.Dir, ID: fmt.Sprintf("chat-%d", i+1), Port: port,
			Env: append([]string{"REDIS_URL=" + t.Redis.URL(), "DATABASE_URL=" + t.Postgres.URL()}, opts.Env...),
		})
		if err != nil {
			t.Down()
			return nil, err
		}
		t.Chats = append(t.Chats, c)
		t.record()
	}
	return t, nil
}

// Down stops the instances (drained), then Postgres and Redis.
func (t *Topology) Down() error {
	var errs []error
	for _, c := range t.Chats {
		errs = append(errs, c.Signal(syscall.SIGTERM))
	}
	for _, c := range t.Chats {
		errs = append(errs, c.Stop(60*time.Second))
	}
	if t.Postgres != nil {
		errs = append(errs, t.Postgres.Stop(30*time.Second))
	}
	if t.Redis != nil {
		errs = append(errs, t.Redis.Stop(10*time.Second))
	}
	os.Remove(filepath.Join(t.opts.Dir, pidFile))
	return errors.Join(errs...)
}

// record writes the pids of every process, for killStale after a crash.
func (t *Topology) record() {
	var pids []string
	for _, p := range t.processes() {
		pids = append(pids, strconv.Itoa(p.Pid()))
	}
	_ = os.WriteFile(filepath.Join(t.opts.Dir, pidFile), []byte(strings.Join(pids, "\n")+"\n"), 0o644)
}

func (t *Topology) processes() []*Process {
	var ps []*Process
	if t.Redis != nil {
		ps = append(ps, t.Redis.Process)
	}
	if t.Postgres != nil {
		ps = append(ps, t.Postgres.Process)
	}
	for _, c := range t.Chats {
		ps = append(ps, c.Process)
	}
	return ps
}

// killStale kills what a crashed run left behind, so its ports and data are free.
func killStale(dir string) {
	data, err := os.ReadFile(filepath.Join(dir, pidFile))
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				fmt.Fprintf(os.Stderr, "local: killed pid %d left by an earlier run\n", pid)
			}
		}
	}
	// Postgres refuses to start while its pid file names a live process; a
	// killed one leaves it behind.
	os.Remove(filepath.Join(dir, "postgres", "postmaster.pid"))
	time.Sleep(200 * time.Millisecond) // let the kernel release the ports of the killed
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
