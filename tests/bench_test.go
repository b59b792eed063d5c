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
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	loadtool "github.com/switchboard-dev/switchboard/app/load"
	"github.com/switchboard-dev/switchboard/app/local"
)

// benchSecret is the local target's JWT_SECRET in the benchmarks.
const benchSecret = "bench-secret-0123456789abcdef0123"

// benchSettings lift the per-connection send limit so that a few publishers
// can drive the saturation scenario.
var benchSettings = []string{"JWT_SECRET=" + benchSecret, "LOG_LEVEL=warn", "RATE_LIMIT=1000", "RATE_BURST=1000"}

// The load scenarios of `make bench` on the local target, each printing one
// summary line. Figures are reported, not asserted.
func TestLoadScenarios(t *testing.T) {
	top, b := startBench(t, 3)
	report.Logf(t, "machine: %d cores; NGINX with 8 workers in front of 3 instances, Redis and Postgres on the same host", runtime.NumCPU())

	t.Run("Idle", func(t *testing.T) {
		// What the instances hold, summed: RSS from /proc, the rest from
		// their /metrics. Each figure per connection is what it grew by
		// since before the connections.
		sum := func(name string) (total float64) {
			for _, c := range top.Chats {
				total += metric(c.URL(), name)
			}
			return total
		}
		type memory struct{ rss, stacks, heapInuse, objects, kept, runtime float64 }
		read := func() memory {
			var rss int64
			for _, c := range top.Chats {
				r, _ := loadtool.ReadRSS(c.Pid())
				rss += r
			}
			return memory{
				rss: float64(rss), stacks: sum("go_memstats_stack_inuse_bytes"),
				heapInuse: sum("go_memstats_heap_inuse_bytes"), objects: sum("go_memstats_heap_alloc_bytes"),
				kept: sum("go_memstats_heap_idle_bytes") - sum("go_memstats_heap_released_bytes"),
				// Outside the heap: poll descriptors and the rest of
				// other_sys, GC metadata, spans, per-P caches, profiling.
				runtime: sum("go_memstats_other_sys_bytes") + sum("go_memstats_gc_sys_bytes") + sum("go_memstats_mspan_inuse_bytes") +
					sum("go_memstats_mcache_inuse_bytes") + sum("go_memstats_buck_hash_sys_bytes"),
			}
		}
		base := read()
		// While chatload holds the connections, read how the instances hold
		// them: 5 s after the last connect, and again after a garbage
		// collection, which an idle server runs within 2 minutes by itself.
		// The sockets of an earlier run leave TIME_WAIT first (b.run would
		// wait for them after the clock below started).
		settle(t)
		held := make(chan string, 1)
		go func() {
			// Up to 2 minutes from the first connection: b.run first waits
			// for other runs' TIME_WAIT sockets, as long again on a busy
			// machine, and a clock started before that measured a few
			// hundred connections mid-burst.
			var first time.Time
			for start := time.Now(); time.Since(start) < 10*time.Minute; time.Sleep(time.Second) {
				n := sum("websocket_connections_active")
				if n >= 44000 || (!first.IsZero() && time.Since(first) > 2*time.Minute) {
					break
				}
				if n > 0 && first.IsZero() {
					first = time.Now()
				}
			}
			perConn := func(when string) string {
				open, m := sum("websocket_connections_active"), read()
				kib := func(now, before float64) float64 { return (now - before) / 1024 / open }
				return fmt.Sprintf("%s: %.0f connections held: per connection %.2f KiB RSS, of which goroutine stacks %.2f KiB, heap in use %.2f KiB (objects %.2f), free heap kept from the OS %.2f KiB, the runtime's own outside the heap %.2f KiB (RSS of the 3 instances %.1f MiB before, %.1f MiB with them)",
					when, open, kib(m.rss, base.rss), kib(m.stacks, base.stacks), kib(m.heapInuse, base.heapInuse),
					kib(m.objects, base.objects), kib(m.kept, base.kept), kib(m.runtime, base.runtime),
					base.rss/(1<<20), m.rss/(1<<20))
			}
			time.Sleep(5 * time.Second) // the last connects
			early := perConn("5 s after the last connect")
			heap := filepath.Join(b.dir, "idle-heap-chat-1.pprof")
			fetch(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/heap?gc=1", top.Chats[0].DebugPort), heap)
			for _, c := range top.Chats[1:] {
				fetch(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/heap?gc=1", c.DebugPort), filepath.Join(b.dir, "idle-heap-"+c.ID+".pprof"))
			}
			time.Sleep(10 * time.Second) // the scavenger returns freed pages
			listing, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=20", "-sample_index=inuse_space", heap).CombinedOutput()
			held <- early + "\n  " + perConn("after a garbage collection") + fmt.Sprintf("\n  heap in use on chat-1 after the collection (%v):\n%s", err, listing)
		}()
		b.run(t, "idle", "-conns", "45000", "-rooms", "4500", "-publishers", "0", "-connect-rate", "3000", "-duration", "55s", "-drain", "0s")
		report.Logf(t, "idle: %s", <-held)
	})
	t.Run("FanOut", func(t *testing.T) {
		b.run(t, "fan-out", "-conns", "1000", "-rooms", "1", "-publishers", "20", "-rate", "200", "-duration", "10s")
	})
	t.Run("Saturation", func(t *testing.T) {
		b.saturate(t, "saturation", []int{500, 1000, 2000, 3000, 4000, 6000, 8000},
			"-conns", "1000", "-rooms", "100", "-publishers", "100", "-duration", "8s")
	})
	t.Run("ManyRooms", func(t *testing.T) {
		b.run(t, "many rooms", "-conns", "50000", "-rooms", "5000", "-publishers", "5000", "-rate", "2000", "-duration", "10s", "-connect-rate", "3000")
	})
}

// TestDirectScenarios are issue 16's figures: one instance, the load tool
// straight to it (no NGINX), Redis and Postgres on the same cores, 64-byte
// messages. Each prints one line: the highest rate whose p99 stays within
// 50 ms, for 1000 rooms of 10 and one room of 1,000, and the tail at a
// fixed 20,000 deliveries/s on 1000 rooms of 10.
func TestDirectScenarios(t *testing.T) {
	top, b := startBench(t, 1)
	b.endpoint = top.Chats[0].URL()
	report.Logf(t, "machine: %d cores; one instance, no NGINX, Redis and Postgres on the same host", runtime.NumCPU())
	b.direct(t, "direct", func(t *testing.T) {
		// The profile's clock starts here: the sockets of the last
		// scenario leave TIME_WAIT first, or it profiles the wait.
		settle(t)
		stop := b.profile(top.Chats[0].DebugPort)
		b.run(t, "direct 1000 rooms × 10 at 2000 msg/s, profiled", "-conns", "10000", "-rooms", "1000", "-publishers", "1000",
			"-connect-rate", "3000", "-rate", "2000", "-duration", "10s")
		stop()
	})
}

// TestCentrifugoScenarios runs the direct scenarios against Centrifugo, the
// server issue 16's targets are set against, with the same load tool
// speaking its protocol on the same day and machine (centrifugo_test.go).
func TestCentrifugoScenarios(t *testing.T) {
	b := newBench(t)
	cf := startCentrifugo(t, b.dir)
	b.endpoint, b.pids, b.args = cf.endpoint, strconv.Itoa(cf.pid), []string{"-protocol", "centrifugo"}
	report.Logf(t, "machine: %d cores; one Centrifugo v%s node, no NGINX, its Redis on the same host", runtime.NumCPU(), centrifugoVersion)
	b.direct(t, "centrifugo", nil)
}

// direct runs the direct scenarios against b's endpoint, their lines
// prefixed with name; profile, if set, runs between the saturations and
// the tail.
func (b *bench) direct(t *testing.T, name string, profile func(*testing.T)) {
	t.Run("Saturation1000x10", func(t *testing.T) {
		b.saturate(t, name+" 1000 rooms × 10", []int{500, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 5500, 7000},
			"-conns", "10000", "-rooms", "1000", "-publishers", "1000", "-connect-rate", "3000", "-duration", "8s")
	})
	t.Run("Saturation1x1000", func(t *testing.T) {
		b.saturate(t, name+" 1 room × 1,000", []int{50, 80, 110, 130, 160, 200, 250, 300, 400},
			"-conns", "1000", "-rooms", "1", "-publishers", "20", "-duration", "8s")
	})
	if profile != nil {
		t.Run("Profile", profile)
	}
	t.Run("TailAt20k", func(t *testing.T) {
		rep := b.run(t, name+" 1000 rooms × 10 at 20,000 deliveries/s", "-conns", "10000", "-rooms", "1000", "-publishers", "1000",
			"-connect-rate", "3000", "-rate", "2000", "-duration", "10s")
		report.Logf(t, "%s tail: p99 %s at %.0f deliveries/s", name, time.Duration(rep.Latency.Quantile(0.99)).Round(100*time.Microsecond), rep.DeliveriesPerSec)
	})
}

// saturate steps through rates (messages a second) until p99 passes 50 ms
// or a message is lost, and prints the highest deliveries/s before that.
func (b *bench) saturate(t *testing.T, name string, rates []int, args ...string) {
	best := 0.0
	for _, rate := range rates {
		rep := b.run(t, fmt.Sprintf("%s at %d msg/s", name, rate), append(args, "-rate", strconv.Itoa(rate))...)
		p99 := time.Duration(rep.Latency.Quantile(0.99))
		if p99 > 50*time.Millisecond || rep.Lost() > 0 {
			report.Logf(t, "%s: p99 %s at %d msg/s; the highest with p99 ≤ 50 ms is %.0f deliveries/s", name, p99.Round(time.Millisecond), rate, best)
			return
		}
		best = rep.DeliveriesPerSec
	}
	report.Logf(t, "%s: p99 stayed ≤ 50 ms up to the last step: %.0f deliveries/s", name, best)
}

// startBench builds the server and the load tool and starts the local
// target with n instances, each serving pprof.
func startBench(t *testing.T, n int) (*local.Topology, *bench) {
	t.Helper()
	b := newBench(t)
	ports := freePorts(t, 2*n)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	top, err := local.Up(ctx, local.Options{
		Dir: filepath.Join(b.dir, "state"), Bin: filepath.Join(b.dir, "chatserver"),
		ChatPorts: ports[:n], DebugPorts: ports[n:], NginxWorkers: 8,
		// SWITCHBOARD_BENCH_ENV: settings to try on the instances (KEY=VALUE ...).
		Env: append(slices.Clone(benchSettings), strings.Fields(os.Getenv("SWITCHBOARD_BENCH_ENV"))...),
	})
	if err != nil {
		t.Fatalf("start the local target: %v", err)
	}
	t.Cleanup(func() { top.Down() })
	var pids []string
	for _, c := range top.Chats {
		pids = append(pids, strconv.Itoa(c.Pid()))
	}
	b.endpoint, b.pids, b.throughNginx = top.Nginx.URL(), strings.Join(pids, ","), true
	return top, b
}

func freePorts(t *testing.T, n int) []int {
	ports := make([]int, n)
	for i := range ports {
		p, err := local.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = p
	}
	return ports
}

// newBench builds the server and the load tool into a directory of the test's.
func newBench(t *testing.T) *bench {
	t.Helper()
	if os.Getenv("SWITCHBOARD_BENCH") == "" {
		t.Skip("the load scenarios run under `make bench` (SWITCHBOARD_BENCH=1): minutes of full load on every core")
	}
	dir := t.TempDir()
	for _, cmd := range []string{"chatserver", "chatload"} {
		if out, err := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, cmd), "../app/cmd/"+cmd).CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", cmd, err, out)
		}
	}
	// SWITCHBOARD_BENCH_CHATSERVER: another build of the server to measure
	// (the version before a change, in the same session as the change).
	if other := os.Getenv("SWITCHBOARD_BENCH_CHATSERVER"); other != "" {
		if err := os.Symlink(other, filepath.Join(dir, "chatserver.other")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "chatserver.other"), filepath.Join(dir, "chatserver")); err != nil {
			t.Fatal(err)
		}
		report.Logf(t, "measuring the server built at %s (SWITCHBOARD_BENCH_CHATSERVER)", other)
	}
	return &bench{t: t, dir: dir}
}

type bench struct {
	t        *testing.T
	dir      string
	endpoint string
	pids     string
	args     []string // for every run of chatload (its protocol)
	cpu      string   // if set, chatload runs pinned to this CPU (taskset -c)
	// throughNginx: runs wait for the last one's sockets to leave
	// TIME_WAIT (settle).
	throughNginx bool
}

// run runs chatload with args against the local target and prints its summary.
func (b *bench) run(t *testing.T, name string, args ...string) *loadtool.Report {
	if b.throughNginx {
		settle(t)
	}
	out := filepath.Join(b.dir, strings.NewReplacer(" ", "-", "/", "-").Replace(name)+".json")
	// chatload runs under SCHED_BATCH: its wakeups then never preempt the
	// server it measures, as a client on another machine could not (on
	// these 2 shared cores the load tool's pollers, woken by nearly every
	// frame, otherwise preempted the instance in its writes).
	command := []string{"chrt", "--batch", "0", filepath.Join(b.dir, "chatload"),
		"-endpoint", b.endpoint, "-secret", benchSecret, "-pids", b.pids, "-json", out}
	if b.cpu != "" {
		command = append([]string{"taskset", "-c", b.cpu}, command...)
	}
	cmd := exec.Command(command[0], append(command[1:], slices.Concat(b.args, args)...)...)
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
		time.Sleep(3 * time.Second) // past the connects, into the publishing
		fetch(base+"profile?seconds=5", cpu)
	}()
	return func() {
		<-done
		heap := filepath.Join(b.dir, "heap.pprof")
		fetch(base+"heap", heap)
		for _, p := range []struct{ name, file, flag string }{{"CPU", cpu, ""}, {"CPU, cumulative", cpu, "-cum"}, {"heap in use", heap, "-sample_index=inuse_space"}} {
			args := []string{"tool", "pprof", "-top", "-nodecount=25"}
			if p.flag != "" {
				args = append(args, p.flag)
			}
			out, err := exec.Command("go", append(args, p.file)...).CombinedOutput()
			report.Logf(b.t, "%s profile of chat-1 (%v):\n%s", p.name, err, out)
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

// metric reads one unlabelled series from an instance's /metrics (0 when
// it cannot).
func metric(base, name string) float64 {
	v, _ := readMetric(base, name)
	return v
}

// readMetric reads one unlabelled series from an instance's /metrics.
func readMetric(base, name string) (float64, error) {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("%s/metrics has no %s", base, name)
}

// settle waits until the connections of the last scenario have left
// TIME_WAIT: NGINX closes its side to the instances, and their ports on
// 127.0.0.1 would run short for the next thousands of connections.
func settle(t *testing.T) {
	for range 120 {
		b, err := os.ReadFile("/proc/net/tcp")
		if err != nil || strings.Count(string(b), " 06 ") < 2000 {
			return
		}
		time.Sleep(time.Second)
	}
	t.Log("TIME_WAIT sockets still above 2000 after 2 minutes; going on")
}
