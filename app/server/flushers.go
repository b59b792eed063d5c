package server

import (
	"fmt"
	"os"
	"sync"
	"time"
)

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
//
// A fan-out that runs for longer than yieldAfter lets the network in: its
// next chunk is started through a pipe in Go's poller (relay), so it runs
// once the runtime has polled the network, which it does only when no
// goroutine is runnable. The next message of the room, arriving meanwhile,
// is then dispatched at once, and the members not yet written get it in
// the same write as the one before, instead of a write each after the
// fan-out ends; the clients' frames are read meanwhile too.
//
// A session's flush can be deferred (session.flushSoon) by WRITE_COALESCE,
// for a hot stream or a send's answer: it waits in a line of its own, which
// is in the order the sessions fall due, with one timer for the line's
// first, which hands the sessions due to the chunks: no timer per session.
// One whose wait ended early (its close, or a frame that ends it:
// session.arrive) was handed to the chunks then, and is passed over when
// its turn comes.
type flushers struct {
	workers *workers
	run     func() // chunk, bound once: a method value passed on allocates
	relay   *os.File
	timer   *time.Timer   // fires when the first deferred session is due
	slack   time.Duration // a session due this soon goes with the ones due now
	stop    chan struct{}

	mu       sync.Mutex
	ready    []*session // waiting from head on
	head     int
	polled   time.Duration // when a chunk last started after a network poll, on the monotonic clock since epoch
	deferred []deferral    // in the order deferred
}

// deferral is a deferred session and when it is due, on the monotonic
// clock since epoch.
type deferral struct {
	s   *session
	due time.Duration
}

const flushChunk = 32

// yieldAfter is how long a fan-out goes on before its next chunk waits for
// a network poll: the longest the network waits behind a fan-out on a core.
const yieldAfter = 500 * time.Microsecond

// add has ss flushed by the next chunks; the first session waiting starts one.
func (f *flushers) add(ss ...*session) {
	f.mu.Lock()
	start := len(f.ready) == f.head
	f.ready = append(f.ready, ss...)
	if start {
		f.polled = time.Since(epoch)
	}
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
	yield := more && time.Since(epoch)-f.polled > yieldAfter
	f.mu.Unlock()
	switch {
	case yield:
		if _, err := f.relay.Write(relayByte); err != nil {
			f.workers.do(f.run) // the server is closing
		}
	case more:
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

// later has s flushed once due, which is after every due in the line
// (now plus the window); the session was marked deferred.
func (f *flushers) later(s *session, due time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deferred = append(f.deferred, deferral{s, due})
	if len(f.deferred) == 1 {
		f.timer.Reset(due - time.Since(epoch))
	}
}

// deferrals hands the deferred sessions to the chunks as they fall due,
// until stop closes.
func (f *flushers) deferrals() {
	var due []*session
	for {
		select {
		case <-f.stop:
			return
		case <-f.timer.C:
		}
		now := time.Since(epoch)
		f.mu.Lock()
		n := 0
		for n < len(f.deferred) && f.deferred[n].due <= now+f.slack {
			due = append(due, f.deferred[n].s)
			n++
		}
		rest := copy(f.deferred, f.deferred[n:])
		clear(f.deferred[rest:])
		f.deferred = f.deferred[:rest]
		if rest > 0 {
			f.timer.Reset(f.deferred[0].due - now)
		}
		f.mu.Unlock()
		n = 0
		for _, s := range due {
			if s.undefer() { // not if its close or an early end took it out
				due[n] = s
				n++
			}
		}
		if n > 0 {
			f.add(due[:n]...)
		}
		clear(due) // ended sessions must not stay reachable from here
		due = due[:0]
	}
}

// relayed starts a chunk for each one the relay carried, until close.
func (f *flushers) relayed(r *os.File) {
	defer r.Close()
	var b [64]byte
	for {
		n, err := r.Read(b[:])
		if err != nil {
			return
		}
		f.mu.Lock()
		f.polled = time.Since(epoch)
		f.mu.Unlock()
		for range n {
			f.workers.do(f.run)
		}
	}
}

// relayByte is what a chunk puts in the relay: allocated once.
var relayByte = []byte{0}

// frameBuffers hold a chunk's frames on their way to the sockets; a buffer
// grown past maxFlush by a batch that went to a writer is left to the GC.
var frameBuffers = sync.Pool{New: func() any { return new([]byte) }}

// newFlushers starts the flushers; window is WRITE_COALESCE, the longest a
// deferred session waits (0: none is).
func newFlushers(w *workers, window time.Duration) (*flushers, error) {
	r, relay, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("the flushers' relay: %w", err)
	}
	f := &flushers{workers: w, relay: relay, stop: make(chan struct{}), slack: window / 8}
	f.run = f.chunk
	go f.relayed(r)
	if window > 0 {
		f.timer = time.NewTimer(time.Hour)
		f.timer.Stop()
		go f.deferrals()
	}
	return f, nil
}

// close ends the relay, after which chunks start directly, and the
// deferrals.
func (f *flushers) close() error {
	close(f.stop)
	return f.relay.Close()
}
