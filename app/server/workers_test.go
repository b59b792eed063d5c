package server

import (
	"runtime"
	"testing"
	"time"
)

// A job never waits for a worker: with every worker blocked, the next job
// runs on a new one.
func TestWorkersNeverMakeAJobWait(t *testing.T) {
	w := newWorkers()
	release := make(chan struct{})
	defer close(release)
	for range 3 {
		w.do(func() { <-release })
	}
	ran := make(chan struct{})
	w.do(func() { close(ran) })
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		t.Fatal("a job waited behind 3 blocked ones")
	}
}

// Jobs one after another reuse the worker that ran the first, which keeps
// its grown stack, instead of a goroutine each; an idle worker ends.
func TestWorkersAreReusedAndEndWhenIdle(t *testing.T) {
	w := newWorkers()
	base := runtime.NumGoroutine()
	for range 200 {
		done := make(chan struct{})
		w.do(func() { close(done) })
		<-done
	}
	if n := runtime.NumGoroutine() - base; n > 2 {
		t.Errorf("%d goroutines left after 200 jobs in a row, want the one worker", n)
	}
	deadline := time.Now().Add(workerIdle + 10*time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine() - base; n > 0 {
		t.Errorf("%d workers still running %s after the last job", n, workerIdle+10*time.Second)
	}
}
