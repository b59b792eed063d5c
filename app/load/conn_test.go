package load

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/gruntwork-io/terratest/modules/retry"

	"github.com/switchboard-dev/switchboard/app/protocol"
	"github.com/switchboard-dev/switchboard/app/wsconn"
)

// message is a message frame as the server writes it, sent at sent.
func message(seq int64, sent time.Time, pad int) []byte {
	text := fmt.Sprintf("%d %s", sent.UnixNano(), strings.Repeat("x", pad))
	return protocol.Message{Room: "r", Seq: seq, User: "u", Text: text, ID: "1-2", TS: sent}.Frame()
}

// The load tool frames the protocol itself, so it is checked against
// gorilla's server: a message gorilla fragments (its write buffer is
// smaller), a ping that must be answered, and a close code that must be
// counted, read by a poller, by a connection's own goroutine, and over TLS
// (always a goroutine).
func TestConnectionsReadWhatGorillaWrites(t *testing.T) {
	for _, tc := range []struct {
		name        string
		polled, tls bool
	}{{"polled", true, false}, {"goroutine", false, false}, {"tls", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			ponged := make(chan string, 1)
			srv := httptest.NewUnstartedServer(gorillaChat(t, func(ws *websocket.Conn) {
				ws.SetPongHandler(func(data string) error { ponged <- data; return nil })
				ws.WriteMessage(websocket.TextMessage, protocol.Joined("r", protocol.Position{Seq: 7}))
				for seq := int64(8); seq <= 10; seq++ {
					ws.WriteMessage(websocket.TextMessage, message(seq, time.Now(), 30))
				}
				ws.WriteMessage(websocket.TextMessage, message(11, time.Now(), 100_000)) // fragmented
				ws.WriteControl(websocket.PingMessage, []byte("are you there"), time.Now().Add(time.Second))
				ws.ReadMessage() // the pong is handled while reading; the close ends it
			}))
			if tc.tls {
				srv.StartTLS()
			} else {
				srv.Start()
			}
			defer srv.Close()

			r := &runner{o: Options{Token: "token", Rooms: 1, Conns: 1}, d: switchboard{}, rep: newReport(), window: NewHistogram()}
			if tc.tls {
				r.roots = srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
			}
			u, _ := url.Parse(strings.Replace(srv.URL, "http", "ws", 1) + "/ws")
			var p *poller
			if tc.polled {
				var err error
				if p, err = newPoller(); err != nil {
					t.Fatal(err)
				}
			}
			c, err := r.dial(context.Background(), u, 0, p)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			select {
			case got := <-ponged:
				if got != "are you there" {
					t.Errorf("pong %q, want the ping's payload", got)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no pong in 10 s")
			}
			retry.DoWithRetry(t, "the four messages", 100, 50*time.Millisecond, func() (string, error) {
				if n := r.delivered.Load(); n != 4 {
					return "", fmt.Errorf("%d delivered", n)
				}
				return "", nil
			})
			if p != nil {
				if err := p.close(); err != nil {
					t.Fatal(err)
				}
			}
			c.closed.Store(true)
			c.shut()
			r.readers.Wait()
			if c.m.joined != 7 || c.m.last != 11 || c.m.gaps != 0 || c.m.dups != 0 {
				t.Errorf("joined at %d, last %d, gaps %d, dups %d: want 7, 11, 0, 0", c.m.joined, c.m.last, c.m.gaps, c.m.dups)
			}
			if r.rep.Latency.Total != 4 {
				t.Errorf("%d latencies recorded, want 4", r.rep.Latency.Total)
			}
		})
	}
}

// A refused handshake is reported with its status, and a join the server
// answers with an error fails the connect with what it said.
func TestRefusalsAreReportedAsTheServerGaveThem(t *testing.T) {
	srv := httptest.NewServer(gorillaChat(t, func(ws *websocket.Conn) {
		ws.WriteMessage(websocket.TextMessage, protocol.ErrorFrame(protocol.Errorf("bad_room", "no such room")))
		ws.ReadMessage()
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL + "/ws")
	p, err := newPoller()
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	for _, tc := range []struct{ token, want string }{
		{"wrong", "handshake refused: 401 Unauthorized (check -token or -secret"},
		{"token", "bad_room"},
	} {
		r := &runner{o: Options{Token: tc.token, Rooms: 1, Conns: 1}, d: switchboard{}, rep: newReport(), window: NewHistogram()}
		c, err := r.dial(context.Background(), u, 0, p)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("token %q: got %v, want %q", tc.token, err, tc.want)
		}
		if c != nil {
			c.shut()
		}
	}
}

// However the kernel splits the stream, every frame is read once: a read
// may end anywhere in a header or a payload.
func TestFramesSplitAtEveryByteAreReadWhole(t *testing.T) {
	var stream []byte
	sent := time.Now()
	for seq := int64(1); seq <= 3; seq++ {
		stream = wsconn.AppendText(stream, message(seq, sent, []int{10, 200, 70_000}[seq-1]))
	}
	stream = wsconn.AppendPing(stream)
	for cut := 1; cut < len(stream); cut += 1 + cut/64 {
		r := &runner{d: switchboard{}, rep: newReport(), window: NewHistogram()}
		c := &conn{r: r, state: open, w: discard{}}
		if !c.read(append([]byte(nil), stream[:cut]...), time.Now()) {
			t.Fatalf("cut at %d: ended", cut)
		}
		if !c.read(append(c.pending, stream[cut:]...), time.Now()) {
			t.Fatalf("cut at %d: ended", cut)
		}
		if c.m.last != 3 || r.delivered.Load() != 3 || len(c.pending) != 0 {
			t.Fatalf("cut at %d: last %d, %d delivered, %d bytes pending", cut, c.m.last, r.delivered.Load(), len(c.pending))
		}
	}
}

// gorillaChat is a chat server's opening on gorilla: it takes only "Bearer
// token", writes a welcome and reads the join, then leaves the connection
// to then. Its write buffer is small enough that a large message goes out
// in fragments.
func gorillaChat(t *testing.T, then func(ws *websocket.Conn)) http.Handler {
	up := websocket.Upgrader{WriteBufferSize: 256}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Header.Get("Authorization") != "Bearer token" {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		ws, err := up.Upgrade(w, req, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		ws.WriteMessage(websocket.TextMessage, protocol.Welcome("i", "u"))
		if _, join, err := ws.ReadMessage(); err != nil || !strings.Contains(string(join), `"op":"join"`) {
			t.Errorf("join: %s, %v", join, err)
			return
		}
		then(ws)
	})
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }
