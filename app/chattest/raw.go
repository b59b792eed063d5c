package chattest

import (
	"errors"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-dev/switchboard/app/protocol"
)

// Raw opens a plain WebSocket (no client library) to wsURL and reads the welcome.
func Raw(t testing.TB, wsURL, token string) *websocket.Conn {
	t.Helper()
	conn, _, err := websocket.DefaultDialer.Dial(wsURL+"?token="+token, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", wsURL, err)
	}
	t.Cleanup(func() { conn.Close() })
	if f := Next(t, conn); f.Op != protocol.OpWelcome {
		t.Fatalf("first frame %+v, want welcome", f)
	}
	return conn
}

// Next reads one frame.
func Next(t testing.TB, conn *websocket.Conn) protocol.ServerFrame {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var f protocol.ServerFrame
	if err := conn.ReadJSON(&f); err != nil {
		t.Fatalf("read frame: %v", err)
	}
	return f
}

// CloseCode reads until the server closes the connection and returns the code.
func CloseCode(t testing.TB, conn *websocket.Conn, within time.Duration) int {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(within))
	for {
		_, _, err := conn.ReadMessage()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code
		}
		if err != nil {
			t.Fatalf("connection ended without a close frame: %v", err)
		}
	}
}

// BadFrame is a frame the server must refuse with an error frame, keeping
// the connection open.
type BadFrame struct{ Frame, Code, Ref string }

// BadFrames are the refusals every instance must give; room is one the
// connection has not joined.
func BadFrames(room string) []BadFrame {
	return []BadFrame{
		{`{"op":"join"`, protocol.CodeBadRequest, ""},
		{`{"op":"shout","room":"lobby"}`, protocol.CodeBadRequest, ""},
		{`{"op":"join","room":"no spaces allowed"}`, protocol.CodeBadRequest, ""},
		{`{"op":"send","room":"` + room + `","text":"hi","id":"x1"}`, protocol.CodeNotJoined, "x1"},
		{`{"op":"leave","room":"` + room + `"}`, protocol.CodeNotJoined, ""},
	}
}

// RefusesBadFrames sends each bad frame on conn and checks its error frame,
// then checks that the connection still joins room.
func RefusesBadFrames(t testing.TB, conn *websocket.Conn, room string) {
	t.Helper()
	for _, c := range BadFrames(room) {
		if err := conn.WriteMessage(websocket.TextMessage, []byte(c.Frame)); err != nil {
			t.Fatal(err)
		}
		if f := Next(t, conn); f.Op != protocol.OpError || f.Code != c.Code || f.Ref != c.Ref || f.Message == "" {
			t.Errorf("%s: got %+v, want error %s ref %q", c.Frame, f, c.Code, c.Ref)
		}
	}
	conn.WriteJSON(protocol.ClientFrame{Op: protocol.OpJoin, Room: room})
	if f := Next(t, conn); f.Op != protocol.OpJoined {
		t.Fatalf("join after refusals: %+v", f)
	}
}

// RefusesBadHandshakes checks the refusals before the upgrade at wsURL:
// 401 without a valid token, 403 for a foreign origin, and an upgrade for
// allowedOrigin and for no origin. mint makes a token for a user and ttl.
func RefusesBadHandshakes(t testing.TB, wsURL, allowedOrigin string, mint func(user string, ttl time.Duration) string) {
	t.Helper()
	cases := []struct {
		name   string
		token  string
		origin string
		status int
	}{
		{"no token", "", "", http.StatusUnauthorized},
		{"invalid token", "not-a-jwt", "", http.StatusUnauthorized},
		{"expired token", mint("alice", -time.Minute), "", http.StatusUnauthorized},
		// Within the verifier's 5 s leeway: still refused, not upgraded and then closed with 1008.
		{"token expired within the leeway", mint("alice", -2*time.Second), "", http.StatusUnauthorized},
		{"foreign origin", mint("alice", time.Hour), "https://evil.example", http.StatusForbidden},
		{"allowed origin", mint("alice", time.Hour), allowedOrigin, http.StatusSwitchingProtocols},
		{"no origin (not a browser)", mint("alice", time.Hour), "", http.StatusSwitchingProtocols},
	}
	for _, c := range cases {
		h := http.Header{}
		if c.token != "" {
			h.Set("Authorization", "Bearer "+c.token)
		}
		if c.origin != "" {
			h.Set("Origin", c.origin)
		}
		conn, resp, _ := websocket.DefaultDialer.Dial(wsURL, h)
		if conn != nil {
			conn.Close()
		}
		if resp == nil || resp.StatusCode != c.status {
			t.Errorf("%s: status %v, want %d", c.name, resp, c.status)
		}
	}
}

// ReadCounting is a dialer whose connections count in reads the socket
// reads that returned bytes: each takes what the server's writes have put
// in the socket by then, so fewer reads than frames means frames shared
// writes.
func ReadCounting(reads *atomic.Int64) *websocket.Dialer {
	return &websocket.Dialer{NetDial: func(network, addr string) (net.Conn, error) {
		c, err := net.Dial(network, addr)
		return countedConn{c, reads}, err
	}}
}

type countedConn struct {
	net.Conn
	reads *atomic.Int64
}

func (c countedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.reads.Add(1)
	}
	return n, err
}
