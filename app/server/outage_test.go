package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/gruntwork-io/terratest/modules/retry"

	"github.com/switchboard-dev/switchboard/app/local"
)

// readyState fetches /ready's status and body.
func readyState(t *testing.T, c *local.Chat) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(c.URL() + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// ownStack is a Redis, a Postgres and one chat instance of a test's own,
// for tests that stop or restart them; each is stopped when the test ends.
type ownStack struct {
	redis *local.Redis
	pg    *local.Postgres
	chat  *local.Chat
}

// startOwnStack starts the stack; settings are the instance's environment
// besides REDIS_URL, DATABASE_URL, JWT_SECRET and a drain of about a second.
func startOwnStack(ctx context.Context, t *testing.T, id string, settings ...string) ownStack {
	t.Helper()
	dir := t.TempDir()
	ports := make([]int, 3)
	for i := range ports {
		p, err := local.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = p
	}
	redis, err := local.StartRedis(ctx, dir, ports[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { redis.Stop(10 * time.Second) })
	pg, err := local.StartPostgres(ctx, dir, ports[1])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Stop(30 * time.Second) })
	vars := append([]string{
		"REDIS_URL=" + redis.URL(), "DATABASE_URL=" + pg.URL(), "JWT_SECRET=" + secret, "DRAIN_DELAY=0s", "DRAIN_TIMEOUT=1s",
	}, settings...)
	c, err := local.StartChat(ctx, local.ChatConfig{Bin: env.bin, Dir: dir, ID: id, Port: ports[2], Env: vars})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop(20 * time.Second) })
	return ownStack{redis: redis, pg: pg, chat: c}
}

func TestReadinessFollowsRedisButOnlyReportsPostgres(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st := startOwnStack(ctx, t, "chat-outage")
	redis, pg, c := st.redis, st.pg, st.chat

	waitReady := func(want int, check func(map[string]any) bool) {
		retry.DoWithRetry(t, "/ready", 40, 250*time.Millisecond, func() (string, error) {
			code, body := readyState(t, c)
			if code != want || !check(body) {
				return "", retryErr(code, body)
			}
			return "ok", nil
		})
	}
	waitReady(http.StatusOK, func(b map[string]any) bool { return b["postgres"] == "ok" })

	// Postgres down: still ready, the outage is in the body.
	if err := pg.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitReady(http.StatusOK, func(b map[string]any) bool { return b["postgres"] != "ok" && b["ready"] == true })
	if err := pg.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	waitReady(http.StatusOK, func(b map[string]any) bool { return b["postgres"] == "ok" })

	// Redis down: unready with the reason, and /ws refuses with 503.
	if err := redis.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitReady(http.StatusServiceUnavailable, func(b map[string]any) bool { return b["redis"] != "ok" && b["reason"] != "" })
	retry.DoWithRetry(t, "/ws refused", 20, 250*time.Millisecond, func() (string, error) {
		_, resp, _ := websocket.DefaultDialer.Dial(c.WSURL()+"?token="+token(t, "alice", time.Hour), nil)
		if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
			return "", retryErr(0, nil)
		}
		return "ok", nil
	})
	if err := redis.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	waitReady(http.StatusOK, func(b map[string]any) bool { return b["redis"] == "ok" })
}

type notYet struct {
	code int
	body map[string]any
}

func (e notYet) Error() string {
	b, _ := json.Marshal(e.body)
	return http.StatusText(e.code) + " " + string(b)
}

func retryErr(code int, body map[string]any) error { return notYet{code, body} }
