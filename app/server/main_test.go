package server_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-dev/switchboard/app/auth"
	"github.com/switchboard-dev/switchboard/app/client"
	"github.com/switchboard-dev/switchboard/app/local"
)

// The integration tests share one Redis, one Postgres and two instances
// (chat-a, chat-b); tests that kill or drain an instance start their own.
// Every test uses rooms of its own.

const secret = "integration-secret-0123456789abcdef"

var env struct {
	dir   string
	bin   string
	redis *local.Redis
	pg    *local.Postgres
	a, b  *local.Chat
}

func TestMain(m *testing.M) {
	code, err := setup(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration setup:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func setup(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "switchboard-it-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	env.dir = dir
	env.bin = filepath.Join(dir, "chatserver")
	if out, err := exec.Command("go", "build", "-race", "-o", env.bin, "../cmd/chatserver").CombinedOutput(); err != nil {
		return 0, fmt.Errorf("build chatserver: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	port, err := local.FreePort()
	if err != nil {
		return 0, err
	}
	if env.redis, err = local.StartRedis(ctx, dir, port); err != nil {
		return 0, err
	}
	defer env.redis.Stop(10 * time.Second)
	if port, err = local.FreePort(); err != nil {
		return 0, err
	}
	if env.pg, err = local.StartPostgres(ctx, dir, port); err != nil {
		return 0, err
	}
	defer env.pg.Stop(30 * time.Second)
	for _, c := range []**local.Chat{&env.a, &env.b} {
		id := "chat-a"
		if c == &env.b {
			id = "chat-b"
		}
		if *c, err = startChat(ctx, id); err != nil {
			return 0, err
		}
		defer (*c).Stop(20 * time.Second)
	}
	return m.Run(), nil
}

// startChat starts an instance on the shared Redis and Postgres; extra
// settings override the test defaults.
func startChat(ctx context.Context, id string, extra ...string) (*local.Chat, error) {
	port, err := local.FreePort()
	if err != nil {
		return nil, err
	}
	return local.StartChat(ctx, local.ChatConfig{
		Bin: env.bin, Dir: env.dir, ID: id, Port: port,
		Env: append([]string{
			"REDIS_URL=" + env.redis.URL(), "DATABASE_URL=" + env.pg.URL(), "JWT_SECRET=" + secret,
			"ALLOWED_ORIGINS=http://localhost:8080", "RATE_LIMIT=10000", "RATE_BURST=10000",
			"DRAIN_DELAY=500ms", "DRAIN_TIMEOUT=1s", "LOG_LEVEL=debug",
		}, extra...),
	})
}

// ownChat starts an instance that the test owns and stops at its end.
func ownChat(t *testing.T, id string, extra ...string) *local.Chat {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := startChat(ctx, id, extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop(20 * time.Second) })
	return c
}

func token(t *testing.T, user string, ttl time.Duration) string {
	t.Helper()
	tok, err := auth.Mint([]byte(secret), user, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// dial connects user to an instance; the client is closed at the test's end.
func dial(t *testing.T, c *local.Chat, user string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, client.Options{URL: c.WSURL(), Token: token(t, user, time.Hour)})
	if err != nil {
		t.Fatalf("dial %s as %s: %v", c.ID, user, err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// storedSeqs lists the seqs of room's rows in Postgres.
func storedSeqs(t *testing.T, room string) []int64 {
	t.Helper()
	ctx := context.Background()
	conn := pgConn(t)
	rows, _ := conn.Query(ctx, `SELECT seq FROM messages WHERE room = $1 ORDER BY seq`, room)
	seqs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	return seqs
}

// deleteStored removes room's rows with from <= seq <= to.
func deleteStored(t *testing.T, room string, from, to int64) {
	t.Helper()
	ctx := context.Background()
	conn := pgConn(t)
	if _, err := conn.Exec(ctx, `DELETE FROM messages WHERE room = $1 AND seq BETWEEN $2 AND $3`, room, from, to); err != nil {
		t.Fatal(err)
	}
}

// pgConn connects to the shared Postgres for the test's duration.
func pgConn(t *testing.T) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, env.pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}
