package server

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-dev/switchboard/app/config"
	"github.com/switchboard-dev/switchboard/app/metrics"
	"github.com/switchboard-dev/switchboard/app/protocol"
)

// BenchmarkWritePath is one frame's way from a session's queue to a client
// over loopback TCP: the writer goroutine, the write deadline, the WebSocket
// framing, the metrics and the syscall. The frame is encoded before: the hub
// encodes each message once for all its recipients (BenchmarkFanOut).
func BenchmarkWritePath(b *testing.B) {
	srv := &Server{cfg: config.Defaults(), m: metrics.New()}
	sessions := make(chan *session, 1)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := (&websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 1024}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		s := newSession(srv, conn, "bench", time.Now().Add(time.Hour))
		go s.write()
		sessions <- s
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
		}
		done <- nil
	}()
	for range b.N {
		s.queue <- d // blocking: the benchmark never overflows the queue
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
