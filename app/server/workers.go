package server

import "time"

// workerIdle is how long a pooled goroutine waits for more work before it
// ends: long enough to serve a busy instance's next frames, short enough
// that an instance holding idle connections holds no workers.
const workerIdle = 2 * time.Second

// workers runs a session's deep work: handling a client's frames, and
// writing a batch (gorilla, JSON, Redis, system calls). On a fresh goroutine
// each time, that work grows a 2 KiB stack to 8 KiB or more, copying it on
// the way, frame after frame; a pooled goroutine keeps the stack it grew.
// An idle session has no goroutine at all: the poller watches its socket.
type workers struct{ jobs chan func() }

func newWorkers() *workers { return &workers{jobs: make(chan func())} }

// do runs f on an idle worker, or on a new one if none is idle; it never
// waits for one.
func (w *workers) do(f func()) {
	select {
	case w.jobs <- f:
	default:
		go w.work(f)
	}
}

func (w *workers) work(f func()) {
	f()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		select {
		case f := <-w.jobs:
			f()
			idle.Reset(workerIdle)
		case <-idle.C:
			return
		}
	}
}
