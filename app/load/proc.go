package load

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// ProcStat is a local process's resident memory and CPU use.
type ProcStat struct {
	PID        int     `json:"pid"`
	RSSAtStart int64   `json:"rss_at_start_bytes"` // once every connection was open
	RSS        int64   `json:"rss_bytes"`          // at the end
	CPU        float64 `json:"cpu"`                // cores used over the sampling window
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

// cpuTime is a process's user plus system CPU time so far.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu of %d: %w", pid, err)
	}
	// Fields after the command (which may hold spaces) start after ") ".
	_, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0, fmt.Errorf("cpu of %d: unreadable stat", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("cpu of %d: unreadable stat", pid)
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// Sampler measures CPU use between Start and Stop.
type Sampler struct {
	pids  []int
	cpu   []time.Duration
	rss   []int64
	began time.Time
}

// Sample starts measuring pids.
func Sample(pids []int) *Sampler {
	s := &Sampler{pids: pids, began: time.Now()}
	for _, p := range pids {
		c, _ := cpuTime(p)
		r, _ := ReadRSS(p)
		s.cpu, s.rss = append(s.cpu, c), append(s.rss, r)
	}
	return s
}

// Stop returns each process's RSS now and its CPU use since Sample.
func (s *Sampler) Stop() []ProcStat {
	var out []ProcStat
	wall := time.Since(s.began)
	for i, p := range s.pids {
		st := ProcStat{PID: p, RSSAtStart: s.rss[i]}
		st.RSS, _ = ReadRSS(p)
		if c, err := cpuTime(p); err == nil {
			st.CPU = float64(c-s.cpu[i]) / float64(wall)
		}
		out = append(out, st)
	}
	return out
}
