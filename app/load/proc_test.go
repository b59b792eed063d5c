package load

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
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
	burn := "i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done"
	cmd := exec.Command("sh", "-c", "read go; sh -c '"+burn+"'; exec sleep 60")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pid := cmd.Process.Pid
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
	// The shell execs sleep once its child has been reaped.
	for deadline := time.Now().Add(2 * time.Minute); ; {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		if strings.TrimSpace(string(b)) == "sleep" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the burning child did not end within 2 minutes")
		}
		time.Sleep(20 * time.Millisecond)
	}
	got := s.Stop()[0]
	if got.CPUSeconds < 0.05 || time.Duration(got.CPUSeconds*float64(time.Second)) < 5*(own()-before) {
		t.Errorf("tree CPU over the window %.2f s, the shell's own %v: want the reaped child's CPU (0.05 s or more) counted", got.CPUSeconds, own()-before)
	}
}
