package load

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gruntwork-io/terratest/modules/retry"
)

func TestParseStat(t *testing.T) {
	tail := " S 41 42 42 0 -1 4194560 100 0 0 0 250 75 30 12 20 0 1 0 100 1000 10"
	for _, c := range []struct {
		name, line string
		want       procStat
		err        bool
	}{
		{"plain", "42 (redis-server)" + tail, procStat{ppid: 41, utime: 250, stime: 75, cutime: 30, cstime: 12}, false},
		{"command with spaces and parentheses", "42 (postgres: a) b (c))" + tail, procStat{ppid: 41, utime: 250, stime: 75, cutime: 30, cstime: 12}, false},
		{"cut short", "42 (x) S 41 42", procStat{}, true},
		{"no command", "42 x S", procStat{}, true},
		{"not a number", "42 (x) S 41 42 42 0 -1 4194560 100 0 0 0 ten 75 30 12 20", procStat{}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseStat(c.line)
			if (err != nil) != c.err || got != c.want {
				t.Errorf("parseStat(%q) = %+v, %v; want %+v, error %v", c.line, got, err, c.want, c.err)
			}
		})
	}
}

func TestTreeCPUAddsUp(t *testing.T) {
	stats := map[int]procStat{
		10: {ppid: 1, utime: 100, stime: 50, cutime: 20, cstime: 5}, // the root, with reaped children
		11: {ppid: 10, utime: 30},
		12: {ppid: 11, stime: 7, cutime: 3}, // a grandchild
		13: {ppid: 1, utime: 1000},          // not in the tree
	}
	if got, want := treeCPU(10, stats), 215*time.Second/clockTicks; got != want {
		t.Errorf("treeCPU = %v, want %v", got, want)
	}
}

// A child that burns CPU and is reaped inside the window counts for its
// parent's tree, as a Postgres backend that ends during a run must.
func TestSamplerCountsAReapedChild(t *testing.T) {
	pid, in := startBurner(t, "sh", "-c", "read go; sh -c '"+burn+"'; exec sleep 60")
	s := Sample([]int{pid})
	own := func() time.Duration {
		st, err := readStat(pid)
		if err != nil {
			t.Fatal(err)
		}
		return time.Duration(st.utime+st.stime) * time.Second / clockTicks
	}
	before := own()
	in.Write([]byte("go\n"))
	awaitSleep(t, pid) // once its child has been reaped
	got := s.Stop()[0]
	if got.CPUSeconds < 0.05 || time.Duration(got.CPUSeconds*float64(time.Second)) < 5*(own()-before) {
		t.Errorf("tree CPU over the window %.2f s, the shell's own %v: want the reaped child's CPU (0.05 s or more) counted", got.CPUSeconds, own()-before)
	}
}

// burn is a shell loop that keeps a core busy for about a second.
const burn = "i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done"

// startBurner starts command, which waits for a line on its stdin before it
// burns; killed at the end of the test.
func startBurner(t *testing.T, command ...string) (int, io.Writer) {
	t.Helper()
	cmd := exec.Command(command[0], command[1:]...)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd.Process.Pid, in
}

// awaitSleep waits for the shell pid to exec sleep, its work done.
func awaitSleep(t *testing.T, pid int) {
	t.Helper()
	retry.DoWithRetry(t, "pid "+strconv.Itoa(pid)+" done", 6000, 20*time.Millisecond, func() (string, error) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		if err != nil || strings.TrimSpace(string(b)) != "sleep" {
			return "", fmt.Errorf("still %q", strings.TrimSpace(string(b)))
		}
		return "", nil
	})
}

func TestParseSchedstat(t *testing.T) {
	for _, c := range []struct {
		name, line string
		want       schedStat
		err        bool
	}{
		{"plain", "1250000 380000 42\n", schedStat{wait: 380000, runs: 42}, false},
		{"two fields", "1250000 380000", schedStat{}, true},
		{"not a number", "1250000 x 42", schedStat{}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseSchedstat(c.line)
			if (err != nil) != c.err || got != c.want {
				t.Errorf("parseSchedstat(%q) = %+v, %v; want %+v, error %v", c.line, got, err, c.want, c.err)
			}
		})
	}
}

func TestRunqWaitIsTheMeanOverThreadsAlive(t *testing.T) {
	before := map[int]schedStat{1: {wait: 1000, runs: 10}, 2: {wait: 5000, runs: 5}}
	after := map[int]schedStat{
		1: {wait: 7000, runs: 13}, // 6 µs over 3 runs
		3: {wait: 2000, runs: 1},  // a new thread: from zero
	} // thread 2 ended: left out
	if got, want := runqWait(before, after), 2*time.Microsecond; got != want {
		t.Errorf("runqWait = %v, want %v (8 µs over 4 runs)", got, want)
	}
	if got := runqWait(before, before); got != 0 {
		t.Errorf("runqWait with no runs = %v, want 0", got)
	}
}

// Two busy processes on one core wait for each other there: the sampler
// sees it, though neither's CPU time shows it.
func TestSamplerSeesTwoProcessesSharingACore(t *testing.T) {
	var pids []int
	var ins []io.Writer
	for range 2 {
		pid, in := startBurner(t, "taskset", "-c", "0", "sh", "-c", "read go; "+burn+"; exec sleep 60")
		pids, ins = append(pids, pid), append(ins, in)
	}
	s := Sample(pids)
	for _, in := range ins {
		in.Write([]byte("go\n"))
	}
	for _, pid := range pids {
		awaitSleep(t, pid)
	}
	for _, st := range s.Stop() {
		t.Logf("pid %d: cpu %.2f s, run queue wait %v a run", st.PID, st.CPUSeconds, st.RunqWait)
		if st.RunqWait < 100*time.Microsecond {
			t.Errorf("pid %d: run queue wait %v a run, want 100 µs or more beside another busy process", st.PID, st.RunqWait)
		}
	}
}
