package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
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

func TestReadinessFollowsRedisButOnlyReportsPostgres(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
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
	defer redis.Stop(10 * time.Second)
	pg, err := local.StartPostgres(ctx, dir, ports[1])
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Stop(30 * time.Second)
	c, err := local.StartChat(ctx, local.ChatConfig{Bin: env.bin, Dir: dir, ID: "chat-outage", Port: ports[2], Env: []string{
		"REDIS_URL=" + redis.URL(), "DATABASE_URL=" + pg.URL(), "JWT_SECRET=" + secret, "DRAIN_DELAY=0s", "DRAIN_TIMEOUT=1s",
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop(20 * time.Second)
	defer os.RemoveAll(dir)

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
