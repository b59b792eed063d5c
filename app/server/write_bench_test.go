package server

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-dev/switchboard/app/auth"
	"github.com/switchboard-dev/switchboard/app/config"
	"github.com/switchboard-dev/switchboard/app/metrics"
	"github.com/switchboard-dev/switchboard/app/protocol"
)

// BenchmarkWritePath is one frame's way from a session's queue to a client
// over loopback TCP: the writer goroutine, the write deadline, the WebSocket
// framing, the metrics and the syscall. The frame is encoded before: the hub
// encodes each message once for all its recipients (BenchmarkFanOut). With a
// window of 1 each frame waits for the last to arrive, as on a quiet
// connection; with 64 in flight the writer finds batches to coalesce, as on
// a busy room's member.
func BenchmarkWritePath(b *testing.B) {
	for _, window := range []int{1, 64} {
		b.Run(fmt.Sprintf("in-flight=%d", window), func(b *testing.B) { benchmarkWritePath(b, window) })
	}
}

func benchmarkWritePath(b *testing.B, window int) {
	srv, err := New(config.Defaults(), nil, nil, nil, metrics.New(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	sessions := make(chan *session, 1)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := srv.upgrade(w, r)
		if err != nil {
			return
		}
		sessions <- newSession(srv, conn, auth.Claims{User: "bench", Expires: time.Now().Add(time.Hour)})
	}))
	defer ts.Close()
	client, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(ts.URL, "http"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	s := <-sessions
	defer s.close(protocol.CloseGoingAway, "done")
	d := &protocol.Delivery{Frame: protocol.Message{
		Room: "lobby", Seq: 42, User: "alice", Text: strings.Repeat("x", 64), ID: "c-1", TS: time.Now(),
	}.Frame(), Seq: 42, Accepted: time.Now()}
	inFlight := make(chan struct{}, window)
	done := make(chan error, 1)
	b.SetBytes(int64(len(d.Frame)))
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		for range b.N {
			if _, _, err := client.ReadMessage(); err != nil {
				done <- err
				return
			}
			<-inFlight
		}
		done <- nil
	}()
	for range b.N {
		inFlight <- struct{}{}
		if !s.Deliver(d) {
			b.Fatal("the session refused a frame")
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
