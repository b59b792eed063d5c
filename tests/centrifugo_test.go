package tests

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	loadtool "github.com/switchboard-dev/switchboard/app/load"
	"github.com/switchboard-dev/switchboard/app/local"
)

// centrifugoVersion is the Centrifugo that `make bench` measures beside
// Switchboard, the version issue 30's figures were set against; the Go
// module proxy serves it.
const centrifugoVersion = "5.4.9"

// TestLoadToolDrivesCentrifugo: chatload's Centrifugo dialect against the
// real server. Every send is acked and reaches all ten members of its
// channel once, in offset order, with its latency measured, as the same
// run against Switchboard reports it.
func TestLoadToolDrivesCentrifugo(t *testing.T) {
	cf := startCentrifugo(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := loadtool.Run(ctx, loadtool.Options{
		Endpoint: cf.endpoint, Protocol: "centrifugo", Secret: benchSecret,
		Conns: 40, Rooms: 4, Publishers: 4, Rate: 200, Messages: 200, Size: 64,
		Drain: 5 * time.Second, RoomPrefix: "drive", Of: 1,
	}, loadtool.Hooks{})
	if err != nil {
		t.Fatalf("chatload -protocol centrifugo: %v", err)
	}
	if err := rep.Whole(40, 200, 2000); err != nil {
		t.Fatal(err)
	}
}

type centrifugo struct {
	endpoint string
	pid      int
	redis    *local.Redis
}

// startCentrifugo runs one Centrifugo node on a Redis of its own, started
// as the local target's is, with data under dir. Channels without a
// namespace stand for rooms: clients may subscribe, subscribers publish,
// and history gives every publication an offset (the seq chatload counts
// gaps by). env adds to Centrifugo's environment.
func startCentrifugo(t *testing.T, dir string, env ...string) centrifugo {
	t.Helper()
	bin := buildCentrifugo(t)
	ports := freePorts(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rdb, err := local.StartRedis(ctx, dir, ports[0])
	if err != nil {
		t.Fatalf("start Redis: %v", err)
	}
	t.Cleanup(rdb.Kill)
	// v5's configuration: flat keys (v6 nests them).
	config := fmt.Sprintf(`{
  "address": "127.0.0.1", "port": "%d", "log_level": "warn", "health": true,
  "token_hmac_secret_key": %q, "allowed_origins": ["*"],
  "engine": "redis", "redis_address": %q,
  "allow_subscribe_for_client": true, "allow_publish_for_subscriber": true,
  "history_size": 100, "history_ttl": "300s", "force_recovery": true
}`, ports[1], benchSecret, rdb.Addr())
	file := filepath.Join(dir, "centrifugo.json")
	if err := os.WriteFile(file, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", file)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start Centrifugo: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	cf := centrifugo{endpoint: fmt.Sprintf("http://127.0.0.1:%d", ports[1]), pid: cmd.Process.Pid, redis: rdb}
	until(t, "Centrifugo healthy", 30*time.Second, func() error {
		resp, err := http.Get(cf.endpoint + "/health")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return want(float64(resp.StatusCode), http.StatusOK)
	})
	return cf
}

// buildCentrifugo builds Centrifugo into ~/.cache/switchboard once and
// returns its path. It builds in a module of its own that requires the
// exact version: `go install m@v` asks the proxy for the module's version
// list (to look for a deprecation), which the proxy here refuses.
func buildCentrifugo(t *testing.T) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(cache, "switchboard", "centrifugo-v"+centrifugoVersion)
	bin := filepath.Join(dir, "centrifugo")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	const module = "github.com/centrifugal/centrifugo/v5"
	mod := t.TempDir()
	for _, args := range [][]string{
		{"mod", "init", "centrifugo-build"},
		{"get", module + "@v" + centrifugoVersion},
		{"build", "-trimpath", "-o", bin, module},
	} {
		cmd := exec.Command("go", args...)
		cmd.Dir, cmd.Env = mod, append(os.Environ(), "GOFLAGS=-mod=mod")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build Centrifugo v%s: go %s: %v\n%s", centrifugoVersion, strings.Join(args, " "), err, out)
		}
	}
	return bin
}
