package wsconn

import (
	"os/exec"
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestWaitReadableStack: a goroutine that only waits in WaitReadable keeps
// Go's 2 KiB minimum stack, which is most of an idle connection's cost
// (README, Performance). The race detector enlarges stacks, so under it the
// test runs again in a binary without it.
func TestWaitReadableStack(t *testing.T) {
	if raceEnabled {
		out, err := exec.Command("go", "test", "-count=1", "-run", "^TestWaitReadableStack$", ".").CombinedOutput()
		if err != nil {
			t.Fatalf("without the race detector: %v\n%s", err, out)
		}
		return
	}
	const n = 500
	conns := make([]*Conn, n)
	for i := range conns {
		conns[i] = dial(t).server
	}
	runtime.GC() // frees the stacks of the goroutines that have ended
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var waiting, done sync.WaitGroup
	waiting.Add(n)
	done.Add(n)
	for _, c := range conns {
		go func() {
			defer done.Done()
			waiting.Done()
			c.WaitReadable()
		}()
	}
	waiting.Wait()
	time.Sleep(200 * time.Millisecond) // every waiter blocks in the poller
	runtime.ReadMemStats(&after)
	per := int(after.StackInuse-before.StackInuse) / n
	t.Logf("a goroutine waiting in WaitReadable holds %d bytes of stack", per)
	for _, c := range conns {
		c.Close()
	}
	done.Wait()
	if per > 3<<10 {
		t.Fatalf("a goroutine waiting in WaitReadable holds %d bytes of stack, want 2 KiB: its call path grew the stack", per)
	}
}
