package server

import (
	"runtime"
	"sync"
	"unsafe"
)

// flushers write the sessions' queued frames, a few goroutines for all of
// them, each frame batch with one system call that does not wait
// (session.flush). A room's message to 1,000 members is then 1,000 system
// calls on a goroutine per core, not 1,000 goroutines woken: those filled
// the run queues, and Go consults the network poller only when they are
// empty, so the next frames from Redis and the clients waited unread.
// A session whose socket is full goes to a writer goroutine of its own.
type flushers []*flusher

type flusher struct {
	mu      sync.Mutex
	ready   []*session
	spare   []*session
	running bool
	workers *workers
}

func newFlushers(w *workers) flushers {
	fs := make(flushers, runtime.GOMAXPROCS(0))
	for i := range fs {
		fs[i] = &flusher{workers: w}
	}
	return fs
}

// add has one of the flushers write s, always the same one for a session.
func (fs flushers) add(s *session) {
	f := fs[(uintptr(unsafe.Pointer(s))>>6)%uintptr(len(fs))]
	f.mu.Lock()
	f.ready = append(f.ready, s)
	start := !f.running
	f.running = true
	f.mu.Unlock()
	if start {
		f.workers.do(f.drain)
	}
}

// drain flushes the sessions added until none is left.
func (f *flusher) drain() {
	var buf []byte
	for {
		f.mu.Lock()
		list := f.ready
		if len(list) == 0 {
			f.running = false
			f.mu.Unlock()
			return
		}
		f.ready, f.spare = f.spare[:0], nil
		f.mu.Unlock()
		for _, s := range list {
			buf = s.flush(buf)
		}
		clear(list)
		f.mu.Lock()
		f.spare = list[:0]
		f.mu.Unlock()
	}
}
