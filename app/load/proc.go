package load

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// ProcStat is a local process's resident memory and CPU use. The CPU is its
// whole tree's: the process, its descendants, and the children they reaped
// during the window (a Postgres's backends, a Redis's rewrite fork).
type ProcStat struct {
	PID        int     `json:"pid"`
	RSSAtStart int64   `json:"rss_at_start_bytes"` // once every connection was open
	RSS        int64   `json:"rss_bytes"`          // at the end
	CPU        float64 `json:"cpu"`                // cores used over the sampling window
	CPUSeconds float64 `json:"cpu_seconds"`        // user plus system CPU time over the window
	// RunqWait is how long, on average over the window, one of the tree's
	// threads waited on a run queue each time it was put on a core
	// (schedstat): a process sharing its core waits for the others there,
	// which its CPU time does not show. Threads that ended meanwhile are
	// left out.
	RunqWait time.Duration `json:"runq_wait_ns"`
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's CPU times, on Linux.
const clockTicks = 100

// ReadRSS is a process's resident set size from /proc.
func ReadRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("rss of %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("rss of %d: no VmRSS", pid)
}

// procStat is what CPU accounting reads of /proc/<pid>/stat: the parent,
// and the CPU times in clock ticks of the process (utime, stime) and of
// the children it has waited for (cutime, cstime, which include theirs).
type procStat struct {
	ppid                         int
	utime, stime, cutime, cstime int64
}

// parseStat reads a /proc/<pid>/stat line. The command, field 2, is in
// parentheses and may itself hold spaces and parentheses: the fields after
// it start after the last ") ".
func parseStat(line string) (procStat, error) {
	i := strings.LastIndex(line, ") ")
	if i < 0 {
		return procStat{}, fmt.Errorf("unreadable stat %.40q", line)
	}
	// From field 3 (state): ppid is field 4, utime to cstime fields 14-17.
	f := strings.Fields(line[i+2:])
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("stat has %d fields after the command, want 15 or more", len(f))
	}
	var n [5]int64
	for j, k := range []int{1, 11, 12, 13, 14} {
		v, err := strconv.ParseInt(f[k], 10, 64)
		if err != nil {
			return procStat{}, fmt.Errorf("stat field %d: %w", k+3, err)
		}
		n[j] = v
	}
	return procStat{ppid: int(n[0]), utime: n[1], stime: n[2], cutime: n[3], cstime: n[4]}, nil
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, fmt.Errorf("cpu of %d: %w", pid, err)
	}
	st, err := parseStat(string(b))
	if err != nil {
		return procStat{}, fmt.Errorf("cpu of %d: %w", pid, err)
	}
	return st, nil
}

// Tree is pid and its live descendants, pid first.
func Tree(pid int) ([]int, error) {
	stats, err := allStats()
	if err != nil {
		return nil, err
	}
	if _, ok := stats[pid]; !ok {
		return nil, fmt.Errorf("process %d: not running", pid)
	}
	return tree(pid, stats), nil
}

func tree(root int, stats map[int]procStat) []int {
	children := map[int][]int{}
	for p, st := range stats {
		children[st.ppid] = append(children[st.ppid], p)
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// allStats reads every process's stat; processes that end meanwhile are
// left out.
func allStats() (map[int]procStat, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	stats := map[int]procStat{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(pid); err == nil {
			stats[pid] = st
		}
	}
	return stats, nil
}

// TreeCPU is the CPU time used so far by pid's tree: each live process's
// own time plus what it has collected of the children it waited for. A
// child that exits between two readings moves from the first term to its
// parent's second, so the difference of two readings is the tree's CPU in
// between, whatever started or ended meanwhile (only a process reparented
// away from the tree is lost).
func TreeCPU(pid int) (time.Duration, error) {
	stats, err := allStats()
	if err != nil {
		return 0, err
	}
	if _, ok := stats[pid]; !ok {
		return 0, fmt.Errorf("cpu of %d: not running", pid)
	}
	return treeCPU(pid, stats), nil
}

func treeCPU(root int, stats map[int]procStat) time.Duration {
	var ticks int64
	for _, p := range tree(root, stats) {
		st := stats[p]
		ticks += st.utime + st.stime + st.cutime + st.cstime
	}
	return time.Duration(ticks) * time.Second / clockTicks
}

// schedStat is one thread's /proc/<pid>/task/<tid>/schedstat: its time
// waiting on a run queue and the times it was put on a core.
type schedStat struct{ wait, runs int64 }

// parseSchedstat reads a schedstat line: time on a core (ns), time waiting
// on a run queue (ns), times run.
func parseSchedstat(line string) (schedStat, error) {
	f := strings.Fields(line)
	if len(f) != 3 {
		return schedStat{}, fmt.Errorf("schedstat %q: want 3 fields", line)
	}
	var n [2]int64
	for i, v := range f[1:] {
		x, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return schedStat{}, fmt.Errorf("schedstat %q: %w", line, err)
		}
		n[i] = x
	}
	return schedStat{wait: n[0], runs: n[1]}, nil
}

// treeSched is the schedstat of every thread of pid's tree, by thread id;
// threads that end while it reads are left out.
func treeSched(pid int) map[int]schedStat {
	out := map[int]schedStat{}
	stats, err := allStats()
	if err != nil {
		return out
	}
	if _, ok := stats[pid]; !ok {
		return out
	}
	for _, p := range tree(pid, stats) {
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", p))
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/schedstat", p, tid))
			if err != nil {
				continue
			}
			if st, err := parseSchedstat(string(b)); err == nil {
				out[tid] = st
			}
		}
	}
	return out
}

// runqWait is the mean wait a run between two treeSched readings: a thread
// new in the second counts from zero, one gone from it not at all.
func runqWait(before, after map[int]schedStat) time.Duration {
	var wait, runs int64
	for tid, a := range after {
		b := before[tid]
		wait, runs = wait+a.wait-b.wait, runs+a.runs-b.runs
	}
	if runs <= 0 {
		return 0
	}
	return time.Duration(wait / runs)
}

// Sampler measures CPU use between Sample and Stop.
type Sampler struct {
	pids  []int
	cpu   []time.Duration
	rss   []int64
	sched []map[int]schedStat
	began time.Time
}

// Sample starts measuring pids' trees.
func Sample(pids []int) *Sampler {
	s := &Sampler{pids: pids, began: time.Now()}
	for _, p := range pids {
		c, _ := TreeCPU(p)
		r, _ := ReadRSS(p)
		s.cpu, s.rss, s.sched = append(s.cpu, c), append(s.rss, r), append(s.sched, treeSched(p))
	}
	return s
}

// Stop returns each process's RSS now and its tree's CPU use and run queue
// wait since Sample.
func (s *Sampler) Stop() []ProcStat {
	var out []ProcStat
	wall := time.Since(s.began)
	for i, p := range s.pids {
		st := ProcStat{PID: p, RSSAtStart: s.rss[i]}
		st.RSS, _ = ReadRSS(p)
		if c, err := TreeCPU(p); err == nil {
			st.CPUSeconds = (c - s.cpu[i]).Seconds()
			st.CPU = float64(c-s.cpu[i]) / float64(wall)
		}
		st.RunqWait = runqWait(s.sched[i], treeSched(p))
		out = append(out, st)
	}
	return out
}
