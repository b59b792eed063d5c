package target

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/switchboard-dev/switchboard/app/auth"
	"github.com/switchboard-dev/switchboard/app/config"
	"github.com/switchboard-dev/switchboard/app/local"
)

// Local is the local target: the processes of `make up`, started on free ports.
type Local struct {
	*local.Topology
	secret []byte
}

// LocalSettings are the instance settings the suite runs the local target with:
// a short drain so that a rolling restart of three instances takes seconds.
// (app/local makes NGINX the trusted proxy whose X-Forwarded-For names each
// client's 127.x.y.z address, which the per-address limits count.)
var LocalSettings = []string{"DRAIN_DELAY=1s", "DRAIN_TIMEOUT=2s", "LOG_LEVEL=warn"}

// LocalOption changes how StartLocal starts the target.
type LocalOption func(*local.Options)

// WithSentinel runs Redis as a primary and a replica watched by three
// sentinels; the instances reach it through them.
func WithSentinel() LocalOption { return func(o *local.Options) { o.Sentinel = true } }

// WithRedisCluster runs a Redis Cluster of shards primaries, each with a
// replica, instead of the one Redis; the instances use redis+cluster://.
func WithRedisCluster(shards int) LocalOption {
	return func(o *local.Options) { o.RedisCluster = shards }
}

// WithEnv adds instance settings (after LocalSettings, so they win).
func WithEnv(env ...string) LocalOption {
	return func(o *local.Options) { o.Env = append(o.Env, env...) }
}

// WithInstanceEnv adds settings to instance i only (0-based, after every
// instance's): one target can run two configurations side by side.
func WithInstanceEnv(i int, env ...string) LocalOption {
	return func(o *local.Options) {
		for len(o.InstanceEnv) <= i {
			o.InstanceEnv = append(o.InstanceEnv, nil)
		}
		o.InstanceEnv[i] = append(o.InstanceEnv[i], env...)
	}
}

// StartLocal starts a local target of n instances under dir with the chatserver binary bin.
func StartLocal(ctx context.Context, dir, bin string, n int, opts ...LocalOption) (*Local, error) {
	const secret = config.DevSecret
	chats := make([]int, n)
	for i := range chats {
		p, err := local.FreePort()
		if err != nil {
			return nil, err
		}
		chats[i] = p
	}
	nginxPort, err := local.FreePort()
	if err != nil {
		return nil, err
	}
	origins := []string{fmt.Sprintf("http://127.0.0.1:%d", nginxPort)}
	for _, p := range chats {
		origins = append(origins, fmt.Sprintf("http://127.0.0.1:%d", p))
	}
	o := local.Options{
		Dir: dir, Bin: bin, ChatPorts: chats, NginxPort: nginxPort, ScrapeInterval: time.Second,
		Env: append([]string{"JWT_SECRET=" + secret, "ALLOW_DEV_SECRET=true", "ALLOWED_ORIGINS=" + strings.Join(origins, ",")}, LocalSettings...),
	}
	for _, opt := range opts {
		opt(&o)
	}
	top, err := local.Up(ctx, o)
	if err != nil {
		return nil, err
	}
	return &Local{Topology: top, secret: []byte(secret)}, nil
}

func (l *Local) Endpoint() string { return l.Nginx.URL() }
func (l *Local) Origin() string   { return l.Nginx.URL() }

func (l *Local) Token(user string, ttl time.Duration) (string, error) {
	return auth.Mint(l.secret, user, ttl)
}

func (l *Local) Instances(context.Context) ([]Instance, error) {
	var is []Instance
	for _, c := range l.Chats {
		is = append(is, Instance{ID: c.ID, URL: c.URL()})
	}
	return is, nil
}

func (l *Local) Kill(_ context.Context, id string) error {
	c, err := l.Chat(id)
	if err != nil {
		return err
	}
	c.Kill()
	return nil
}

func (l *Local) Start(ctx context.Context, id string) error {
	c, err := l.Chat(id)
	if err != nil {
		return err
	}
	if err := c.Start(ctx); err != nil {
		return err
	}
	return c.WaitReady(ctx)
}

// RollingUpdate restarts the instances in turn.
func (l *Local) RollingUpdate(ctx context.Context) ([]time.Duration, error) {
	var drains []time.Duration
	for _, c := range l.Chats {
		drain, err := l.Restart(ctx, c.ID)
		if err != nil {
			return drains, err
		}
		drains = append(drains, drain)
	}
	return drains, nil
}

// DrainNode: the local target's instances are processes on this machine.
func (l *Local) DrainNode(context.Context) (string, error) { return "", ErrNoNodes }

// Restart stops the instance gracefully (SIGTERM and its drain), starts it
// again and returns when it is ready, with how long the drain took.
func (l *Local) Restart(ctx context.Context, id string) (time.Duration, error) {
	c, err := l.Chat(id)
	if err != nil {
		return 0, err
	}
	began := time.Now()
	if err := c.Signal(syscall.SIGTERM); err != nil {
		return 0, err
	}
	select {
	case <-c.Exited():
	case <-ctx.Done():
		return 0, fmt.Errorf("restart %s: drain not over: %w", id, ctx.Err())
	}
	drain := time.Since(began)
	if code := c.ExitCode(); code != 0 {
		return drain, fmt.Errorf("restart %s: drain ended with exit %d, want 0; see %s", id, code, c.LogPath)
	}
	return drain, l.Start(ctx, id)
}

// StopRedis stops the one Redis, or every node of the cluster.
func (l *Local) StopRedis(context.Context) error {
	if l.Cluster != nil {
		return l.Cluster.Stop(10 * time.Second)
	}
	return l.Redis.Stop(10 * time.Second)
}

// StartRedis starts it again, on its data; a cluster once it is healthy.
func (l *Local) StartRedis(ctx context.Context) error {
	if l.Cluster != nil {
		return l.Cluster.Start(ctx)
	}
	return l.Redis.Start(ctx)
}

func (l *Local) StopPostgres(context.Context) error      { return l.Postgres.Stop(30 * time.Second) }
func (l *Local) StartPostgres(ctx context.Context) error { return l.Postgres.Start(ctx) }
