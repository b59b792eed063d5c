package server

import (
	"runtime/debug"
	"sync"
	"time"
)

// trimmer gives the heap's free pages back to the OS once a burst of
// connections is over. A handshake leaves several times an idle
// connection's size in garbage (the request, its headers, the token, the
// quota's round trip), so during a burst the heap grows to twice what the
// connections keep, and Go's scavenger returns only what lies above its
// next collection's goal: without this an instance that took 15,000
// connections went on holding that garbage's pages, 1.5-2 KiB of RSS a
// connection, for as long as it stayed idle (docs/performance.md).
//
// It costs a collection and the madvise of the free pages, once a burst:
// after at least burst connections, when none has come for quiet, and at
// most once every every. Steady churn never triggers it: its heap does not
// grow.
type trimmer struct {
	burst int
	quiet time.Duration
	every time.Duration
	free  func() // debug.FreeOSMemory

	mu      sync.Mutex
	pending int         // connections since the last trim
	last    time.Time   // the last trim
	timer   *time.Timer // fires quiet after the last connection of a burst
}

func newTrimmer() *trimmer {
	return &trimmer{burst: 1000, quiet: time.Second, every: 30 * time.Second, free: debug.FreeOSMemory}
}

// connected counts a new connection.
func (t *trimmer) connected() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pending++; t.pending < t.burst {
		return
	}
	if t.timer == nil {
		t.timer = time.AfterFunc(t.quiet, t.fire)
	} else {
		t.timer.Reset(t.quiet)
	}
}

func (t *trimmer) fire() {
	t.mu.Lock()
	if wait := t.every - time.Since(t.last); wait > 0 {
		t.timer.Reset(wait)
		t.mu.Unlock()
		return
	}
	t.pending, t.last = 0, time.Now()
	t.mu.Unlock()
	t.free()
}
