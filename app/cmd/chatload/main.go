// Command chatload opens many WebSocket connections to a Switchboard
// endpoint, publishes into their rooms and reports connects, acks,
// deliveries per second, publish-to-deliver latency, losses, duplicates and
// disconnects. Large runs are spread over worker processes it starts itself,
// since one process may hold only so many open files.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/switchboard-dev/switchboard/app/load"
)

// perProcess is how many connections one worker holds: under this host's
// 20,000 open files, with room for its other descriptors.
const perProcess = 15000

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "chatload:", err)
		os.Exit(1)
	}
}

type flags struct {
	o       load.Options
	workers int
	worker  bool
	version bool
	pids    string
	jsonOut string
	cpuProf string
}

func parse(args []string) (*flags, error) {
	f := &flags{}
	fs := flag.NewFlagSet("chatload", flag.ContinueOnError)
	fs.StringVar(&f.o.Endpoint, "endpoint", "http://127.0.0.1:8080", "the load balancer: http(s)://host:port or ws(s)://host:port/ws")
	fs.StringVar(&f.o.Protocol, "protocol", "switchboard", "the servers' protocol: switchboard, or centrifugo to measure a Centrifugo server alike (its JSON protocol, at /connection/websocket unless -endpoint names a path)")
	fs.StringVar(&f.o.Token, "token", "", "a JWT for every connection")
	fs.StringVar(&f.o.Secret, "secret", os.Getenv("JWT_SECRET"), "the server's JWT_SECRET, to mint a token per connection (default $JWT_SECRET)")
	fs.IntVar(&f.o.Conns, "conns", 100, "connections in all")
	fs.Float64Var(&f.o.ConnectRate, "connect-rate", 2000, "new connections a second; 0: as fast as they open")
	fs.IntVar(&f.o.Rooms, "rooms", 10, "rooms; connections spread evenly over them")
	fs.IntVar(&f.o.Publishers, "publishers", -1, "how many of the connections also send; default one per room")
	fs.Float64Var(&f.o.Rate, "rate", 100, "messages a second in all")
	fs.IntVar(&f.o.Size, "size", 64, "bytes of message text")
	fs.DurationVar(&f.o.Duration, "duration", 10*time.Second, "how long to publish")
	fs.IntVar(&f.o.Messages, "messages", 0, "stop after this many messages instead (overrides -duration)")
	fs.DurationVar(&f.o.Drain, "drain", 30*time.Second, "after publishing, wait at most this long for late deliveries (until 3 s pass without one)")
	fs.IntVar(&f.workers, "workers", 0, fmt.Sprintf("worker processes; 0: one per %d connections", perProcess))
	fs.StringVar(&f.pids, "pids", "", "comma-separated pids of local server processes: report their RSS and CPU")
	fs.StringVar(&f.jsonOut, "json", "", "write the whole report as JSON to this file (- for stdout)")
	fs.StringVar(&f.cpuProf, "cpuprofile", "", "write each worker's CPU profile to this file with .<worker> appended, to see what the load generator itself costs")
	spread := fs.String("spread", "auto", "dial from 127.x.y.z so ip_hash spreads clients: auto (on loopback), on, off")
	fs.BoolVar(&f.version, "version", false, "print chatload's version and exit")
	fs.BoolVar(&f.worker, "worker", false, "internal: run one share for a parent chatload")
	fs.IntVar(&f.o.Index, "worker-index", 0, "internal")
	fs.StringVar(&f.o.RoomPrefix, "room-prefix", fmt.Sprintf("load%06d", rand.IntN(1e6)), "rooms are <prefix>-<n>")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if f.version { // needs no other flag
		return f, nil
	}
	if f.o.Messages > 0 {
		f.o.Duration = 0
	}
	if f.o.Publishers == -1 {
		f.o.Publishers = min(f.o.Rooms, f.o.Conns)
	}
	if f.workers == 0 {
		f.workers = max(1, (f.o.Conns+perProcess-1)/perProcess)
	}
	f.o.Of = f.workers
	switch *spread {
	case "auto":
		f.o.Spread = f.o.Loopback()
	case "on", "off":
		f.o.Spread = *spread == "on"
	default:
		return nil, fmt.Errorf("-spread %q: want auto, on or off", *spread)
	}
	return f, f.o.Validate()
}

func run() error {
	f, err := parse(os.Args[1:])
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if f.version {
		fmt.Println("chatload", version())
		return nil
	}
	if f.worker {
		if f.cpuProf != "" {
			stop, err := profileCPU(fmt.Sprintf("%s.%d", f.cpuProf, f.o.Index))
			if err != nil {
				return err
			}
			defer stop()
		}
		return worker(ctx, f.o)
	}
	var pids []int
	for _, p := range strings.Split(f.pids, ",") {
		if p = strings.TrimSpace(p); p != "" {
			n, err := strconv.Atoi(p)
			if err != nil {
				return fmt.Errorf("-pids %q: want comma-separated process ids", f.pids)
			}
			pids = append(pids, n)
		}
	}
	if f.workers > 1 {
		fmt.Fprintf(os.Stderr, "chatload: %d connections over %d worker processes (at most %d each: a process here may hold %d open files)\n",
			f.o.Conns, f.workers, perProcess, openFileLimit())
	}
	// The servers' CPU is measured from the start of publishing until
	// every worker's late deliveries have stopped.
	var sampler *load.Sampler
	var servers []load.ProcStat
	rep, err := spread(ctx, f, func() { sampler = load.Sample(pids) }, func() {
		if sampler != nil { // nil when a worker failed before publishing
			servers = sampler.Stop()
		}
	})
	if err != nil {
		return err
	}
	if len(pids) > 0 {
		rep.Servers = servers
	}
	fmt.Printf("chatload: %s\n  %s\n", f.o.String(), rep.Summary())
	if f.jsonOut != "" {
		out := io.Writer(os.Stdout)
		if f.jsonOut != "-" {
			file, err := os.Create(f.jsonOut)
			if err != nil {
				return fmt.Errorf("-json: %w", err)
			}
			defer file.Close()
			out = file
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Options load.Options `json:"options"`
			Lost    int64        `json:"lost"`
			*load.Report
		}{f.o, rep.Lost(), rep})
	}
	return nil
}

func profileCPU(path string) (stop func(), err error) {
	file, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(file); err != nil {
		file.Close()
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); file.Close() }, nil
}

// message is one line a worker writes to its parent.
type message struct {
	Ready    bool           `json:"ready,omitempty"`
	Drained  bool           `json:"drained,omitempty"`
	Progress *load.Progress `json:"progress,omitempty"`
	Report   *load.Report   `json:"report,omitempty"`
	Error    string         `json:"error,omitempty"`
}

// worker runs one share, telling the parent through stdout and waiting on
// stdin for the word to publish.
func worker(ctx context.Context, o load.Options) error {
	var mu sync.Mutex
	enc := json.NewEncoder(os.Stdout)
	say := func(m message) {
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(m)
	}
	rep, err := load.Run(ctx, o, load.Hooks{
		Ready: func(context.Context) error {
			say(message{Ready: true})
			if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
				return fmt.Errorf("wait for the parent: %w", err)
			}
			return nil
		},
		Drained:  func() { say(message{Drained: true}) },
		Progress: func(p load.Progress) { say(message{Progress: &p}) },
	})
	if err != nil {
		// The parent reports it, once for the run.
		say(message{Error: err.Error()})
		return nil
	}
	say(message{Report: rep})
	return nil
}

// spread runs the workers, holds them until every one is connected and
// joined, shows their progress and merges their reports. publishing is
// called as they are let go, drained once every one has seen its late
// deliveries stop (or ended without a report); it is called only after
// publishing.
func spread(ctx context.Context, f *flags, publishing, drained func()) (*load.Report, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	type proc struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		lines *bufio.Scanner
	}
	var procs []proc
	for i := range f.workers {
		args := append(os.Args[1:], "-worker", "-worker-index", strconv.Itoa(i), "-workers", strconv.Itoa(f.workers), "-room-prefix", f.o.RoomPrefix)
		cmd := exec.CommandContext(ctx, self, args...)
		cmd.Stderr = os.Stderr
		// A worker never outlives its parent.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		in, err := cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("start worker %d: %w", i, err)
		}
		defer cmd.Wait()
		s := bufio.NewScanner(out)
		s.Buffer(make([]byte, 1<<20), 64<<20)
		procs = append(procs, proc{cmd, in, s})
	}
	type fromWorker struct {
		i int
		m message
	}
	msgs := make(chan fromWorker)
	for i, p := range procs {
		go func() {
			for p.lines.Scan() {
				var m message
				if json.Unmarshal(p.lines.Bytes(), &m) == nil {
					msgs <- fromWorker{i, m}
				}
			}
			msgs <- fromWorker{i, message{Error: "worker ended without a report"}}
		}()
	}
	progress := make([]load.Progress, len(procs))
	reports := make([]*load.Report, len(procs))
	ready, done, quiet := 0, 0, 0
	var errs []error
	// A worker is settled once it says drained or fails.
	settledOnes := make([]bool, len(procs))
	settled := func(i int) {
		if settledOnes[i] {
			return
		}
		settledOnes[i] = true
		if quiet++; quiet == len(procs) {
			drained()
		}
	}
	show := newProgressLine()
	for done < len(procs) {
		wm := <-msgs
		switch m := wm.m; {
		case m.Ready:
			if ready++; ready == len(procs) {
				publishing()
				for _, p := range procs {
					_, _ = io.WriteString(p.stdin, "go\n")
				}
			}
		case m.Drained:
			settled(wm.i)
		case m.Progress != nil:
			progress[wm.i] = *m.Progress
			show(progress)
		case m.Report != nil:
			reports[wm.i] = m.Report
			done++
		case m.Error != "":
			if reports[wm.i] == nil {
				errs = append(errs, fmt.Errorf("worker %d: %s", wm.i, m.Error))
				reports[wm.i] = &load.Report{}
				done++
				settled(wm.i)
				if ready < len(procs) {
					// The others wait for everyone: let them go.
					ready++
					for _, p := range procs {
						_, _ = io.WriteString(p.stdin, "go\n")
					}
				}
			}
		}
	}
	show(nil)
	var merged *load.Report
	for _, r := range reports {
		if r.Latency == nil {
			continue
		}
		if merged == nil {
			merged = r
			continue
		}
		merged.Merge(r)
	}
	if merged == nil {
		return nil, errors.Join(errs...)
	}
	return merged, errors.Join(errs...)
}

// newProgressLine prints the workers' summed progress on one line of a
// terminal, once a second; nil ends the line.
func newProgressLine() func([]load.Progress) {
	fi, err := os.Stderr.Stat()
	tty := err == nil && fi.Mode()&os.ModeCharDevice != 0
	var last load.Progress
	lastAt := time.Now()
	return func(ps []load.Progress) {
		if !tty {
			return
		}
		if ps == nil {
			fmt.Fprintln(os.Stderr)
			return
		}
		if time.Since(lastAt) < time.Second {
			return
		}
		var sum load.Progress
		for _, p := range ps {
			sum.Open += p.Open
			sum.Sent += p.Sent
			sum.Deliveries += p.Deliveries
			sum.P99 = max(sum.P99, p.P99)
		}
		secs := time.Since(lastAt).Seconds()
		fmt.Fprintf(os.Stderr, "\r\033[Kconns %d | sent %.0f/s | delivered %.0f/s | p99 %.1fms",
			sum.Open, float64(sum.Sent-last.Sent)/secs, float64(sum.Deliveries-last.Deliveries)/secs, float64(sum.P99)/1e6)
		last, lastAt = sum, time.Now()
	}
}

func openFileLimit() uint64 {
	var l syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l)
	return l.Max
}

// version is the module version the go command stamped: the release for
// `go install …/chatload@v0.1.0` or a build at a release tag, a
// pseudo-version for a build in a checkout with VCS stamping, else (devel).
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
