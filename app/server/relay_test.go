package server

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/switchboard-dev/switchboard/app/auth"
	"github.com/switchboard-dev/switchboard/app/config"
	"github.com/switchboard-dev/switchboard/app/metrics"
	"github.com/switchboard-dev/switchboard/app/protocol"
)

// TestALongFanOutLetsTheNetworkIn: on one core, a goroutine whose socket
// became readable runs while a fan-out to 1,000 sessions is still writing,
// not at its end: the flushers start their next chunk through the relay once
// the fan-out has run for yieldAfter, and Go polls the network only when no
// goroutine is runnable. Without that, the room's next message from Redis
// and the clients' frames waited for the whole fan-out.
func TestALongFanOutLetsTheNetworkIn(t *testing.T) {
	const members = 1000
	m := metrics.New()
	srv, err := New(config.Defaults(), nil, nil, nil, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	sessions := make(chan *session, members)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := srv.upgrade(w, r)
		if err != nil {
			return
		}
		sessions <- newSession(srv, conn, auth.Claims{User: "member", Expires: time.Now().Add(time.Hour)})
	}))
	defer ts.Close()
	all := make([]*session, members)
	for i := range all {
		c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(ts.URL, "http"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go io.Copy(io.Discard, c.NetConn()) // reads as a client does
		all[i] = <-sessions
		defer all[i].close(protocol.CloseGoingAway, "done")
	}

	// The network goroutine: it notes how many frames were written when it
	// got to run.
	a, b := socketPair(t)
	seen := make(chan float64, 1)
	go func() {
		var one [1]byte
		if _, err := a.Read(one[:]); err == nil {
			seen <- testutil.ToFloat64(m.FramesSent)
		}
		close(seen)
	}()
	// 4 KiB frames: a fan-out of milliseconds, well past yieldAfter.
	d := &protocol.Delivery{Frame: bytes.Repeat([]byte("x"), 4<<10)}

	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	if _, err := b.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	for _, s := range all {
		s.Deliver(d)
	}
	got, ok := <-seen
	if !ok {
		t.Fatal("the network goroutine's read failed")
	}
	if got >= members/2 {
		t.Fatalf("the network goroutine ran after %.0f of %d frames were written; want it let in early in the fan-out", got, members)
	}
	t.Logf("the network goroutine ran after %.0f of %d frames", got, members)
}

// socketPair is two ends of a loopback TCP connection.
func socketPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	b, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}
