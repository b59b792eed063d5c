package server

import "sync"

// flushers write the sessions' queued frames in chunks: a pooled worker
// takes up to flushChunk sessions that have frames waiting and writes each
// one's batch with one system call that does not wait (session.flush). A
// room's message to 1,000 members then wakes about 30 goroutines rather
// than 1,000: those filled the run queues, and Go consults the network
// poller only when they are empty, so the next frames from Redis and the
// clients waited unread. A chunk is short, so the chunks of a large fan-out
// spread over the cores and never hold one for long; a few long-running
// flushers instead fell behind whenever the other goroutines had the cores.
// A session whose socket is full goes to a writer goroutine of its own.
type flushers struct {
	workers *workers
	run     func() // chunk, bound once: a method value passed on allocates

	mu    sync.Mutex
	ready []*session // waiting from head on
	head  int
}

const flushChunk = 32

// add has s flushed by the next chunk; the first session waiting starts one.
func (f *flushers) add(s *session) {
	f.mu.Lock()
	f.ready = append(f.ready, s)
	start := len(f.ready)-f.head == 1
	f.mu.Unlock()
	if start {
		f.workers.do(f.run)
	}
}

// chunk takes up to flushChunk sessions, starts the next chunk if more are
// waiting, and flushes its own.
func (f *flushers) chunk() {
	var take [flushChunk]*session
	f.mu.Lock()
	n := copy(take[:], f.ready[f.head:])
	clear(f.ready[f.head : f.head+n])
	f.head += n
	more := f.head < len(f.ready)
	if !more || f.head > len(f.ready)/2 {
		// Move the waiting ones down: taking from the front stays O(1) a
		// session, and the slice does not grow under a steady backlog.
		rest := copy(f.ready, f.ready[f.head:])
		clear(f.ready[rest:])
		f.ready, f.head = f.ready[:rest], 0
	}
	f.mu.Unlock()
	if more {
		f.workers.do(f.run)
	}
	buf := frameBuffers.Get().(*[]byte)
	for _, s := range take[:n] {
		*buf = s.flush(*buf)
	}
	if cap(*buf) <= maxFlush {
		frameBuffers.Put(buf)
	}
}

// frameBuffers hold a chunk's frames on their way to the sockets; a buffer
// grown past maxFlush by a batch that went to a writer is left to the GC.
var frameBuffers = sync.Pool{New: func() any { return new([]byte) }}

func newFlushers(w *workers) *flushers {
	f := &flushers{workers: w}
	f.run = f.chunk
	return f
}
