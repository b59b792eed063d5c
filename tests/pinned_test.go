package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	loadtool "github.com/switchboard-dev/switchboard/app/load"
	"github.com/switchboard-dev/switchboard/app/local"
	"github.com/switchboard-dev/switchboard/tests/perfdoc"
)

// The pinned comparison (issue 30), what `make bench` runs: each server on
// CPU 1, the load tool and the datastores on CPU 0, so that the cores the
// two share do not decide the figures. Every server runs throughout and
// all are idle before each point, so the one measured works alone. Per
// shape, the table point (the table's rate, SWITCHBOARD_BENCH_SECONDS) in rounds
// interleaved between the two contenders, Switchboard's round 1, then
// Centrifugo's, then round 2 ...: on this shared machine p99 swings
// several-fold from run to run, and the table takes the medians of runs
// made side by side in time. Then each contender's sweep of the other
// rates (the p99 against rate curve), once. CPU per delivery is each
// process tree's CPU time from /proc over the publishing window, divided
// by the deliveries. The floor (tests/floor), a reference beside the two
// servers, runs the table's rates only, once, after the rounds.
const (
	serverCPU = "1"
	loadCPU   = "0"
)

// pinnedShape is one load shape of the comparison.
type pinnedShape struct {
	name  string
	args  []string // chatload's connections, rooms and publishers
	fixed int      // the table's rate, one both servers sustain
	rates []int    // the sweep, rising
}

var pinnedShapes = []pinnedShape{
	{"1000 rooms × 10", []string{"-conns", "10000", "-rooms", "1000", "-publishers", "1000", "-connect-rate", "3000"},
		1500, []int{500, 1000, 1500, 2500, 3500, 5000}},
	{"1 room × 1,000", []string{"-conns", "1000", "-rooms", "1", "-publishers", "20"},
		100, []int{50, 100, 200, 300, 400}},
}

// pinnedServer is a server under comparison, started with its datastores.
type pinnedServer struct {
	name     string
	endpoint string
	ready    string // answers 200 when it takes connections
	pid      int
	stores   []store // its datastores, in the order chatload reports them
	args     []string
	// fixedOnly: only each shape's table rate, once, no rounds or sweep
	// (the floor, whose figure is a bound, not a contender).
	fixedOnly bool
}

// pidList is chatload's -pids for s: the server, then its stores.
func (s pinnedServer) pidList() string {
	pids := []string{strconv.Itoa(s.pid)}
	for _, st := range s.stores {
		pids = append(pids, strconv.Itoa(st.pid))
	}
	return strings.Join(pids, ",")
}

type store struct {
	name string
	pid  int
}

func TestPinnedComparison(t *testing.T) {
	b := newBench(t)
	seconds := envCount(t, "SWITCHBOARD_BENCH_SECONDS", 20, 2, "the table points' seconds; sweep points take half")
	rounds := envCount(t, "SWITCHBOARD_BENCH_ROUNDS", 3, 1, "the table points' rounds per server")
	if runtime.NumCPU() < 2 {
		t.Skip("the pinned comparison needs 2 CPUs: one for the server alone")
	}
	loadBefore := loadAverage()
	servers := []pinnedServer{startPinnedSwitchboard(t, b), startPinnedCentrifugo(t, b), startPinnedFloor(t, b)}
	for _, srv := range servers {
		pin(t, serverCPU, srv.pid)
		for _, st := range srv.stores {
			pin(t, loadCPU, st.pid)
		}
	}
	b.cpu = loadCPU
	interleaved := fmt.Sprintf("%s round 1, %s round 1, %[1]s round 2, ...", servers[0].name, servers[1].name)
	run := perfdoc.Run{
		Date: time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		Method: fmt.Sprintf("Each server on CPU %s with GOMAXPROCS=1 (`taskset`), chatload, Redis and Postgres on CPU %s; all running throughout, every one idle before each point; "+
			"table points %d s in %d rounds, interleaved (%s), the table's figures the medians over the rounds; then sweep points %d s, once each; 64-byte messages; "+
			"CPU from /proc over the publishing window (process trees), latency from chatload. "+
			"%s: tests/floor, rooms in memory, one write per delivery, no datastores, at the table's rates only, once, after the rounds.",
			serverCPU, loadCPU, seconds, rounds, interleaved, sweepSeconds(seconds), floorName),
		Floor: floorName,
	}
	for _, shape := range pinnedShapes {
		t.Run(shape.name, func(t *testing.T) {
			measure := func(srv pinnedServer, rate, round int) {
				if p, ok := b.measure(t, servers, srv, shape, rate, round, seconds); ok {
					run.Points = append(run.Points, p)
				}
			}
			for round := 1; round <= rounds; round++ {
				for _, srv := range servers {
					if !srv.fixedOnly {
						measure(srv, shape.fixed, round)
					}
				}
			}
			for _, srv := range servers {
				if srv.fixedOnly {
					measure(srv, shape.fixed, 1)
				}
			}
			for _, srv := range servers {
				if !srv.fixedOnly {
					run.Points = append(run.Points, b.sweep(t, servers, srv, shape, seconds)...)
				}
			}
		})
	}
	run.Machine = machineState(loadBefore, loadAverage())
	report.Logf(t, "pinned comparison, %s:\n%s", run.Machine, perfdoc.Table(run))
	if js, err := json.MarshalIndent(run, "", "  "); err == nil {
		_ = os.WriteFile(filepath.Join(b.dir, "pinned.json"), js, 0o644)
	}
	// SWITCHBOARD_BENCH_DOCS: the docs folder to write the run into, if
	// every server ran.
	if dir := os.Getenv("SWITCHBOARD_BENCH_DOCS"); dir != "" && !t.Failed() && benchPoints.String() == "" {
		if err := writeBenchDocs(dir, run); err != nil {
			t.Fatalf("write the run into %s: %v", dir, err)
		}
	}
}

// envCount is the whole number in the variable name, def when it is unset;
// a bad value fails the test, naming the variable and its form.
func envCount(t *testing.T, name string, def, least int, what string) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < least {
		t.Fatalf("%s=%q: want a whole number, %d or more (%s)", name, s, least, what)
	}
	return n
}

// sweep runs shape's rates other than the table's against srv, rising, for
// half the table points' seconds, until a rate past the table's runs
// behind it (perfdoc's Behind).
func (b *bench) sweep(t *testing.T, all []pinnedServer, srv pinnedServer, shape pinnedShape, seconds int) []perfdoc.Point {
	var out []perfdoc.Point
	for _, rate := range shape.rates {
		if rate == shape.fixed {
			continue
		}
		p, ok := b.measure(t, all, srv, shape, rate, 0, seconds)
		if !ok {
			continue
		}
		out = append(out, p)
		if rate > shape.fixed && p.Behind() {
			break
		}
	}
	return out
}

// measure runs shape at rate against srv once all the servers are idle:
// round (from 1) of the table point for seconds, or, round 0, a sweep
// point for half as long. False if SWITCHBOARD_BENCH_POINTS leaves it out.
func (b *bench) measure(t *testing.T, all []pinnedServer, srv pinnedServer, shape pinnedShape, rate, round, seconds int) (perfdoc.Point, bool) {
	t.Helper()
	name, d := fmt.Sprintf("%s %s at %d msg/s", srv.name, shape.name, rate), sweepSeconds(seconds)
	if round > 0 {
		name, d = fmt.Sprintf("%s, round %d", name, round), seconds
	}
	if !benchPoints.MatchString(name) {
		return perfdoc.Point{}, false
	}
	b.endpoint, b.pids, b.args = srv.endpoint, srv.pidList(), srv.args
	args := append(slices.Clone(shape.args), "-rate", strconv.Itoa(rate), "-duration", fmt.Sprintf("%ds", d), "-drain", "10s")
	quiesce(t, all...)
	rep := b.run(t, name, args...)
	if rep.Connect.Failed > 0 {
		// Refused while still busy with the last run: once more.
		quiesce(t, all...)
		rep = b.run(t, name+", again", args...)
	}
	p, err := point(srv, shape, rate, round, rep)
	if err != nil {
		t.Fatal(err)
	}
	return p, true
}

// benchPoints: SWITCHBOARD_BENCH_POINTS, a regular expression; only the
// points whose name it matches run, e.g. `Switchboard 1 room .* at 100 ` (an
// A/B of one shape, every round). The docs are then not written.
var benchPoints = regexp.MustCompile(os.Getenv("SWITCHBOARD_BENCH_POINTS"))

// quiesce waits, a minute at most, until every server and its stores are
// done with the last run (its thousands of connections closing): less than
// a tenth of a core together over a second; then until each server is
// ready (an instance starved of CPU may have found Redis slow to answer).
// Every server, not only the next one measured: all share the cores, and
// one's teardown must not overlap another's run.
func quiesce(t *testing.T, servers ...pinnedServer) {
	t.Helper()
	defer func() {
		for _, srv := range servers {
			until(t, srv.name+" ready", time.Minute, func() error {
				resp, err := http.Get(srv.ready)
				if err != nil {
					return err
				}
				resp.Body.Close()
				return want(float64(resp.StatusCode), http.StatusOK)
			})
		}
	}()
	var pids []int
	for _, srv := range servers {
		pids = append(pids, srv.pid)
		for _, st := range srv.stores {
			pids = append(pids, st.pid)
		}
	}
	for range 60 {
		s := loadtool.Sample(pids)
		time.Sleep(time.Second)
		busy := 0.0
		for _, p := range s.Stop() {
			busy += p.CPU
		}
		if busy < 0.1 {
			return
		}
	}
	t.Logf("the servers still busy a minute after the last run; going on")
}

func sweepSeconds(seconds int) int { return max(seconds/2, 2) }

// point is one run's figures; chatload reports the processes of -pids in
// their order: the server, then its stores.
func point(srv pinnedServer, shape pinnedShape, rate, round int, rep *loadtool.Report) (perfdoc.Point, error) {
	if len(rep.Servers) != 1+len(srv.stores) {
		return perfdoc.Point{}, fmt.Errorf("%s at %d msg/s: chatload measured %d processes, want %d", shape.name, rate, len(rep.Servers), 1+len(srv.stores))
	}
	p := perfdoc.Point{
		Server: srv.name, Shape: shape.name, Rate: rate, Fixed: rate == shape.fixed, Round: round,
		Seconds: rep.Elapsed.Seconds(), Deliveries: rep.Deliveries, Lost: rep.Lost(),
		P50: time.Duration(rep.Latency.Quantile(0.5)), P99: time.Duration(rep.Latency.Quantile(0.99)),
		ServerCPU: rep.Servers[0].CPUSeconds, StoreCPU: map[string]float64{},
	}
	for i, st := range srv.stores {
		p.StoreCPU[st.name] = rep.Servers[1+i].CPUSeconds
	}
	return p, nil
}

// pin sets the CPU affinity of every thread of pid and of its descendants
// (a Postgres's backends; those forked later inherit it).
func pin(t *testing.T, cpu string, pid int) {
	t.Helper()
	pids, err := loadtool.Tree(pid)
	if err != nil {
		t.Fatalf("pin %d to CPU %s: %v", pid, cpu, err)
	}
	for _, p := range pids {
		if out, err := exec.Command("taskset", "-a", "-p", "-c", cpu, strconv.Itoa(p)).CombinedOutput(); err != nil {
			t.Fatalf("taskset -a -p -c %s %d: %v\n%s", cpu, p, err, out)
		}
	}
}

// startPinnedSwitchboard starts one instance on its own Redis and Postgres,
// started as the local target's are; no NGINX, Prometheus or other
// instance runs beside it.
func startPinnedSwitchboard(t *testing.T, b *bench) pinnedServer {
	t.Helper()
	dir := filepath.Join(b.dir, "switchboard")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rdb, err := local.StartRedis(ctx, dir, ports[0])
	if err != nil {
		t.Fatalf("start Redis: %v", err)
	}
	t.Cleanup(rdb.Kill)
	pg, err := local.StartPostgres(ctx, dir, ports[1])
	if err != nil {
		t.Fatalf("start Postgres: %v", err)
	}
	t.Cleanup(func() { pg.Stop(10 * time.Second) })
	chat, err := local.StartChat(ctx, local.ChatConfig{
		Bin: filepath.Join(b.dir, "chatserver"), Dir: dir, ID: "chat-1", Port: ports[2],
		Env: append(append([]string{"REDIS_URL=" + rdb.URL(), "DATABASE_URL=" + pg.URL(), "GOMAXPROCS=1"}, benchSettings...),
			strings.Fields(os.Getenv("SWITCHBOARD_BENCH_ENV"))...),
	})
	if err != nil {
		t.Fatalf("start the instance: %v", err)
	}
	t.Cleanup(chat.Kill)
	if err := chat.WaitReady(ctx); err != nil {
		t.Fatalf("the instance: %v", err)
	}
	return pinnedServer{name: "Switchboard", endpoint: chat.URL(), ready: chat.URL() + "/ready", pid: chat.Pid(),
		stores: []store{{"Redis", rdb.Pid()}, {"Postgres", pg.Pid()}}}
}

func startPinnedCentrifugo(t *testing.T, b *bench) pinnedServer {
	t.Helper()
	cf := startCentrifugo(t, b.dir, "GOMAXPROCS=1")
	return pinnedServer{name: "Centrifugo v" + centrifugoVersion, endpoint: cf.endpoint, ready: cf.endpoint + "/health", pid: cf.pid,
		stores: []store{{"Redis", cf.redis.Pid()}}, args: []string{"-protocol", "centrifugo"}}
}

// floorName is the floor's column in the table.
const floorName = "Floor (in memory)"

// startPinnedFloor builds and starts the floor (tests/floor): what each
// delivery needs and nothing more, with no datastores.
func startPinnedFloor(t *testing.T, b *bench) pinnedServer {
	t.Helper()
	bin := filepath.Join(b.dir, "floor")
	if out, err := exec.Command("go", "build", "-trimpath", "-o", bin, "./floor").CombinedOutput(); err != nil {
		t.Fatalf("build the floor: %v\n%s", err, out)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1)[0])
	cmd := exec.Command(bin, "-listen", addr, "-secret", benchSecret)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the floor: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	srv := pinnedServer{name: floorName, endpoint: "http://" + addr, ready: "http://" + addr + "/ready", pid: cmd.Process.Pid, fixedOnly: true}
	until(t, "the floor ready", 30*time.Second, func() error {
		resp, err := http.Get(srv.ready)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return want(float64(resp.StatusCode), http.StatusOK)
	})
	return srv
}

// loadAverage is the 1-minute load average, or -1.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// machineState names the machine's state for the figures: busy when other
// work held a core as the run began (1-minute load average 1 or more; the
// build just before the run leaves about 0.5, already gone).
func machineState(before, after float64) string {
	state := "quiet"
	if before >= 1 {
		state = "busy (other work running: latency figures are noisy)"
	}
	return fmt.Sprintf("%d cores, %s; 1-minute load average %.2f before the run, %.2f after", runtime.NumCPU(), state, before, after)
}

// writeBenchDocs writes run into the docs folder: performance.md's
// generated section, the plot, and log.md's entry.
func writeBenchDocs(dir string, run perfdoc.Run) error {
	const plot = "img/p99-vs-rate.svg"
	if err := os.WriteFile(filepath.Join(dir, plot), perfdoc.Plot(run), 0o644); err != nil {
		return err
	}
	for _, f := range []struct {
		name   string
		update func(string) (string, error)
	}{
		{"performance.md", func(s string) (string, error) { return perfdoc.Replace(s, perfdoc.Section(run, plot)) }},
		{"log.md", func(s string) (string, error) { return perfdoc.Prepend(s, perfdoc.LogEntry(run)) }},
	} {
		path := filepath.Join(dir, f.name)
		old, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		text, err := f.update(string(old))
		if err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			return err
		}
	}
	return nil
}
