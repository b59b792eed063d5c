package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	loadtool "github.com/switchboard-dev/switchboard/app/load"
	"github.com/switchboard-dev/switchboard/app/local"
)

// benchSettings lift the per-connection send limit so that a few publishers
// can drive the saturation scenario.
var benchSettings = []string{"JWT_SECRET=bench-secret", "LOG_LEVEL=warn", "RATE_LIMIT=1000", "RATE_BURST=1000"}

// The load scenarios of `make bench` on the local target, each printing one
// summary line. Figures are reported, not asserted.
func TestLoadScenarios(t *testing.T) {
	if os.Getenv("SWITCHBOARD_BENCH") == "" {
		t.Skip("the load scenarios run under `make bench` (SWITCHBOARD_BENCH=1): minutes of full load on every core")
	}
	dir := t.TempDir()
	for _, cmd := range []string{"chatserver", "chatload"} {
		if out, err := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, cmd), "../app/cmd/"+cmd).CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", cmd, err, out)
		}
	}
	ports := make([]int, 6)
	for i := range ports {
		p, err := local.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = p
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	top, err := local.Up(ctx, local.Options{
		Dir: filepath.Join(dir, "state"), Bin: filepath.Join(dir, "chatserver"),
		ChatPorts: ports[:3], DebugPorts: ports[3:], NginxWorkers: 8, Env: benchSettings,
	})
	if err != nil {
		t.Fatalf("start the local target: %v", err)
	}
	defer top.Down()
	var pids []string
	for _, c := range top.Chats {
		pids = append(pids, strconv.Itoa(c.Pid()))
	}
	b := &bench{t: t, dir: dir, endpoint: top.Nginx.URL(), pids: strings.Join(pids, ",")}
	report.Logf(t, "machine: %d cores; NGINX with 8 workers in front of 3 instances, Redis and Postgres on the same host", runtime.NumCPU())

	t.Run("Idle", func(t *testing.T) {
		var base int64
		for _, c := range top.Chats {
			r, _ := loadtool.ReadRSS(c.Pid())
			base += r
		}
		rep := b.run(t, "idle", "-conns", "45000", "-rooms", "4500", "-publishers", "0", "-connect-rate", "3000", "-drain", "1s")
		var held int64
		for _, s := range rep.Servers {
			held += s.RSSAtStart
		}
		report.Logf(t, "idle: %d connections open; RSS %.1f MiB before, %.1f MiB with them: %.1f KiB per connection (3 instances)",
			rep.Connect.Open, float64(base)/(1<<20), float64(held)/(1<<20), float64(held-base)/1024/float64(max(1, rep.Connect.Open)))
	})
	t.Run("FanOut", func(t *testing.T) {
		b.run(t, "fan-out", "-conns", "1000", "-rooms", "1", "-publishers", "20", "-rate", "200", "-duration", "10s")
	})
	t.Run("ManyRooms", func(t *testing.T) {
		b.run(t, "many rooms", "-conns", "50000", "-rooms", "5000", "-publishers", "5000", "-rate", "2000", "-duration", "10s", "-connect-rate", "3000")
	})
	t.Run("Saturation", func(t *testing.T) {
		best := 0.0
		for _, rate := range []int{500, 1000, 2000, 3000, 4000, 6000, 8000} {
			profile := rate == 2000
			var stopProfile func()
			if profile {
				stopProfile = b.profile(top.Chats[0].DebugPort)
			}
			rep := b.run(t, fmt.Sprintf("saturation at %d msg/s", rate), "-conns", "1000", "-rooms", "100", "-publishers", "100",
				"-rate", strconv.Itoa(rate), "-duration", "8s")
			if profile {
				stopProfile()
			}
			p99 := time.Duration(rep.Latency.Quantile(0.99))
			if p99 > 50*time.Millisecond || rep.Lost() > 0 {
				report.Logf(t, "saturation: p99 %s at %d msg/s; the highest sustained with p99 ≤ 50 ms is %.0f deliveries/s", p99.Round(time.Millisecond), rate, best)
				return
			}
			best = rep.DeliveriesPerSec
		}
		report.Logf(t, "saturation: p99 stayed ≤ 50 ms up to the last step: %.0f deliveries/s", best)
	})
}

type bench struct {
	t        *testing.T
	dir      string
	endpoint string
	pids     string
}

// run runs chatload with args against the local target and prints its summary.
func (b *bench) run(t *testing.T, name string, args ...string) *loadtool.Report {
	out := filepath.Join(b.dir, strings.ReplaceAll(name, " ", "-")+".json")
	cmd := exec.Command(filepath.Join(b.dir, "chatload"), append([]string{
		"-endpoint", b.endpoint, "-secret", "bench-secret", "-pids", b.pids, "-json", out,
	}, args...)...)
	cmd.Stderr = os.Stderr
	text, err := cmd.Output()
	if err != nil {
		t.Fatalf("chatload %s: %v\n%s", name, err, text)
	}
	var rep loadtool.Report
	b2, err := os.ReadFile(out)
	if err == nil {
		err = json.Unmarshal(b2, &rep)
	}
	if err != nil {
		t.Fatalf("%s: report: %v", name, err)
	}
	report.Logf(t, "%s: %s", name, strings.TrimSpace(string(text)))
	return &rep
}

// profile takes a 5 s CPU profile and a heap profile of the instance
// serving pprof on port, and prints the top of each.
func (b *bench) profile(port int) (stop func()) {
	done := make(chan struct{})
	base := fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/", port)
	cpu := filepath.Join(b.dir, "cpu.pprof")
	go func() {
		defer close(done)
		time.Sleep(2 * time.Second) // into the steady state
		fetch(base+"profile?seconds=5", cpu)
	}()
	return func() {
		<-done
		heap := filepath.Join(b.dir, "heap.pprof")
		fetch(base+"heap", heap)
		for _, p := range []struct{ name, file, flag string }{{"CPU", cpu, ""}, {"heap in use", heap, "-sample_index=inuse_space"}} {
			args := []string{"tool", "pprof", "-top", "-nodecount=12"}
			if p.flag != "" {
				args = append(args, p.flag)
			}
			out, err := exec.Command("go", append(args, p.file)...).CombinedOutput()
			report.Logf(b.t, "%s profile of chat-1 at 2000 msg/s (%v):\n%s", p.name, err, out)
		}
	}
}

func fetch(url, file string) {
	resp, err := http.Get(url)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(file)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = io.Copy(f, resp.Body)
}
