package wsconn

import (
	"errors"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-dev/switchboard/app/netpoll"
)

// TestWatchedConnectionsHoldNoGoroutine: an idle connection waits for its
// client in the poller's epoll set, not on a goroutine of its own (2 KiB of
// stack and more each, most of what an idle connection would cost); the
// client's frame and a shutdown are both reported.
func TestWatchedConnectionsHoldNoGoroutine(t *testing.T) {
	p, err := netpoll.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	const n = 200
	pairs := make([]pair, n)
	for i := range pairs {
		pairs[i] = dial(t)
	}
	reports := make([]chan struct{}, n)
	watches := make([]*netpoll.Watch, n)
	before := runtime.NumGoroutine()
	for i, c := range pairs {
		reports[i] = make(chan struct{}, 4)
		ready := reports[i]
		if watches[i], err = c.server.Watch(p, func() { ready <- struct{}{} }); err != nil {
			t.Fatal(err)
		}
	}
	if added := runtime.NumGoroutine() - before; added > 0 {
		t.Fatalf("watching %d connections added %d goroutines, want none", n, added)
	}
	reported := func(i int, why string) {
		t.Helper()
		select {
		case <-reports[i]:
		case <-time.After(5 * time.Second):
			t.Fatalf("connection %d: no report after %s", i, why)
		}
	}

	first := pairs[0]
	if err := first.client.WriteMessage(websocket.TextMessage, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	reported(0, "the client's frame")
	if _, data, err := first.server.ReadMessage(); err != nil || string(data) != "hello" {
		t.Fatalf("read after the report: %q, %v", data, err)
	}

	last := pairs[n-1]
	if err := last.server.Shutdown(); err != nil {
		t.Fatal(err)
	}
	reported(n-1, "a shutdown")
	last.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := last.client.ReadMessage(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the client's read after the shutdown: %v, want the connection's end", err)
	}
	for _, w := range watches {
		if err := w.Stop(); err != nil {
			t.Fatal(err)
		}
	}
}
