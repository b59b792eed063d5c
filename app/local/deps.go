package local

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// Redis is a redis-server process with its data in its own directory.
type Redis struct {
	*Process
	Port int
	dir  string
	name string
	// replicaOf is the primary (host:port) it replicates; empty for a primary.
	replicaOf string
	extra     []string // more options (a cluster node's)
}

// StartRedis starts redis-server on 127.0.0.1:port with an append-only file
// synced on every write, so an acked message survives a Redis restart.
func StartRedis(ctx context.Context, dir string, port int) (*Redis, error) {
	return startRedis(ctx, dir, "redis", port, "")
}

// startRedis starts the node name with its data in dir/name, as a replica
// of replicaOf if set, with the extra options.
func startRedis(ctx context.Context, dir, name string, port int, replicaOf string, extra ...string) (*Redis, error) {
	data := filepath.Join(dir, name)
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	// The AOF is written before every reply (appendfsync no, unlike everysec,
	// never postpones that write), so a killed Redis loses nothing it acked.
	// Only a crash of the machine could, as it could Postgres's unsynced
	// writes below. always added an fsync of this disk to the event loop:
	// stalls of 9-32 ms, and 3 times the p50 of a send (docs/performance.md).
	//
	// noeviction: a full Redis must refuse writes, never drop keys. Every
	// room key has a TTL, so a volatile-* policy (ElastiCache's default is
	// volatile-lru) evicts a room's keys one at a time (counter, epoch,
	// limit, dedupe ids, history) and an allkeys-* one the persist stream
	// too: seqs and acked messages lost without a word (issue 25). It is
	// redis-server's default; stated so that no config file changes it.
	args := []string{"--bind", "127.0.0.1", "--port", itoa(port), "--dir", data,
		"--appendonly", "yes", "--appendfsync", "no", "--save", "",
		"--protected-mode", "no", "--maxclients", "10000",
		"--maxmemory-policy", "noeviction"}
	if replicaOf != "" {
		host, port, _ := strings.Cut(replicaOf, ":")
		args = append(args, "--replicaof", host, port)
	}
	p, err := spawn(name, dir, "", nil, "redis-server", append(args, extra...)...)
	if err != nil {
		return nil, err
	}
	r := &Redis{Process: p, Port: port, dir: dir, name: name, replicaOf: replicaOf, extra: extra}
	if err := waitTCP(ctx, p, r.Addr()); err != nil {
		p.Kill()
		return nil, err
	}
	return r, nil
}

// Addr is host:port.
func (r *Redis) Addr() string { return "127.0.0.1:" + itoa(r.Port) }

// URL is its REDIS_URL.
func (r *Redis) URL() string { return "redis://" + r.Addr() + "/0" }

// Restart stops Redis gracefully and starts it again on the same port and data.
func (r *Redis) Restart(ctx context.Context) error {
	if err := r.Stop(10 * time.Second); err != nil {
		return err
	}
	return r.Start(ctx)
}

// Start starts Redis again, after it stopped, on the same port and data.
func (r *Redis) Start(ctx context.Context) error {
	<-r.Exited()
	n, err := startRedis(ctx, r.dir, r.name, r.Port, r.replicaOf, r.extra...)
	if err != nil {
		return err
	}
	*r = *n
	return nil
}

// Wipe deletes the data of a stopped Redis: started again, it has lost
// everything, as after a restart without persistence.
func (r *Redis) Wipe() error {
	select {
	case <-r.Exited():
	default:
		return fmt.Errorf("wipe %s: still running", r.name)
	}
	if err := os.RemoveAll(filepath.Join(r.dir, r.name)); err != nil {
		return fmt.Errorf("wipe %s: %w", r.name, err)
	}
	return nil
}

// Info is one INFO section as key → value.
func (r *Redis) Info(ctx context.Context, section string) (map[string]string, error) {
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
	defer c.Close()
	text, err := c.Info(ctx, section).Result()
	if err != nil {
		return nil, fmt.Errorf("%s: info %s: %w", r.name, section, err)
	}
	info := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			info[k] = v
		}
	}
	return info, nil
}

// SetMaxmemory sets maxmemory (bytes, 0: none) and maxmemory-policy, in the
// order that never refuses writes on the way: a limit below what is used
// under noeviction would fail every write.
func (r *Redis) SetMaxmemory(ctx context.Context, bytes int64, policy string) error {
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
	defer c.Close()
	set := [][2]string{{"maxmemory-policy", policy}, {"maxmemory", strconv.FormatInt(bytes, 10)}}
	if policy == "noeviction" {
		set[0], set[1] = set[1], set[0]
	}
	for _, kv := range set {
		if err := c.ConfigSet(ctx, kv[0], kv[1]).Err(); err != nil {
			return fmt.Errorf("%s: config set %s %s: %w", r.name, kv[0], kv[1], err)
		}
	}
	return nil
}

const pgDir = "/usr/lib/postgresql/15/bin"

func pgBin(name string) string { return filepath.Join(pgDir, name) }

// Postgres is a PostgreSQL 15 server run as the postgres user (it refuses root).
type Postgres struct {
	*Process
	Port int
	dir  string
}

// DataDir is the cluster's data directory (pg_hba.conf, postgresql.conf).
func (p *Postgres) DataDir() string { return filepath.Join(p.dir, "postgres") }

// Database is the database the chat servers use.
const Database = "switchboard"

// StartPostgres initialises a cluster in dir/postgres (once) and starts it on
// 127.0.0.1:port, creating the switchboard database.
func StartPostgres(ctx context.Context, dir string, port int) (*Postgres, error) {
	dir, err := filepath.Abs(dir) // postgres resolves paths from its data directory
	if err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	data := filepath.Join(dir, "postgres")
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); err != nil {
		if err := initdb(dir, data); err != nil {
			return nil, err
		}
	}
	// Not a problem for tests: fsync off only trades crash safety of the
	// whole machine, which no test simulates, for speed.
	p, err := spawn("postgres", dir, "postgres", nil, pgBin("postgres"),
		"-D", data, "-p", itoa(port), "-k", data, "-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off", "-c", "max_connections=200")
	if err != nil {
		return nil, err
	}
	pg := &Postgres{Process: p, Port: port, dir: dir}
	if err := pg.createDatabase(ctx); err != nil {
		p.Kill()
		return nil, err
	}
	return pg, nil
}

func initdb(dir, data string) error {
	cred, err := credential("postgres")
	if err != nil {
		return fmt.Errorf("initdb: %w", err)
	}
	if err := os.MkdirAll(data, 0o700); err != nil {
		return fmt.Errorf("initdb: %w", err)
	}
	// postgres must be able to pass through every parent of its data directory.
	for d := filepath.Dir(data); d != "/" && d != "."; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(d, fi.Mode().Perm()|0o001); err != nil {
				return fmt.Errorf("initdb: let postgres into %s: %w", d, err)
			}
		}
	}
	if err := os.Chown(data, int(cred.Uid), int(cred.Gid)); err != nil {
		return fmt.Errorf("initdb: %w", err)
	}
	p, err := spawn("initdb", dir, "postgres", nil, pgBin("initdb"),
		"-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
	if err != nil {
		return err
	}
	if err := p.Wait(2 * time.Minute); err != nil || p.ExitCode() != 0 {
		return fmt.Errorf("initdb failed (exit %d); see %s", p.ExitCode(), p.LogPath)
	}
	return nil
}

// Addr is host:port.
func (pg *Postgres) Addr() string { return "127.0.0.1:" + itoa(pg.Port) }

// URL is its DATABASE_URL.
func (pg *Postgres) URL() string {
	return "postgres://postgres@" + pg.Addr() + "/" + Database + "?sslmode=disable"
}

func (pg *Postgres) createDatabase(ctx context.Context) error {
	if err := waitTCP(ctx, pg.Process, pg.Addr()); err != nil {
		return err
	}
	url := "postgres://postgres@" + pg.Addr() + "/postgres?sslmode=disable"
	for {
		conn, err := pgx.Connect(ctx, url)
		if err == nil {
			defer conn.Close(ctx)
			var exists bool
			if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, Database).Scan(&exists); err != nil {
				return fmt.Errorf("postgres: %w", err)
			}
			if !exists {
				if _, err := conn.Exec(ctx, "CREATE DATABASE "+Database); err != nil {
					return fmt.Errorf("postgres: create database: %w", err)
				}
			}
			return nil
		}
		// The server listens before it accepts logins ("starting up").
		select {
		case <-pg.Exited():
			return fmt.Errorf("postgres exited (exit %d); see %s", pg.ExitCode(), pg.LogPath)
		case <-ctx.Done():
			return fmt.Errorf("postgres not accepting connections: %w (last: %v)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Restart stops Postgres (fast shutdown) and starts it again on the same data.
func (pg *Postgres) Restart(ctx context.Context) error {
	if err := pg.Stop(30 * time.Second); err != nil {
		return err
	}
	return pg.Start(ctx)
}

// Start starts Postgres again, after it stopped, on the same port and data.
func (pg *Postgres) Start(ctx context.Context) error {
	<-pg.Exited()
	n, err := StartPostgres(ctx, pg.dir, pg.Port)
	if err != nil {
		return err
	}
	*pg = *n
	return nil
}

// Stop shuts Postgres down with SIGINT (fast shutdown: ends sessions at once).
func (pg *Postgres) Stop(grace time.Duration) error { return pg.stopWith(syscall.SIGINT, grace) }

func credential(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("user %s: %w (it comes with the postgresql package)", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}
