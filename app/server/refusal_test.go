package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/gruntwork-io/terratest/modules/retry"

	"github.com/switchboard-dev/switchboard/app/chattest"
	"github.com/switchboard-dev/switchboard/app/client"
	"github.com/switchboard-dev/switchboard/app/protocol"
)

func TestHandshakeRefusals(t *testing.T) {
	chattest.RefusesBadHandshakes(t, env.a.WSURL(), "http://localhost:8080", func(user string, ttl time.Duration) string {
		return token(t, user, ttl)
	})
}

func TestBadFramesGetErrorFramesAndTheConnectionStays(t *testing.T) {
	conn := chattest.Raw(t, env.a.WSURL(), token(t, "alice", time.Hour))
	chattest.RefusesBadFrames(t, conn, chattest.Room())
}

func TestOversizeFrameIsClosedWith1009(t *testing.T) {
	conn := chattest.Raw(t, env.a.WSURL(), token(t, "alice", time.Hour))
	big := `{"op":"send","room":"lobby","text":"` + strings.Repeat("x", 5000) + `"}`
	conn.WriteMessage(websocket.TextMessage, []byte(big))
	if code := chattest.CloseCode(t, conn, 5*time.Second); code != protocol.CloseTooLarge {
		t.Fatalf("close code %d, want 1009", code)
	}
}

func TestExpiredTokenClosesTheConnectionWith1008(t *testing.T) {
	conn := chattest.Raw(t, env.a.WSURL(), token(t, "alice", 2*time.Second))
	if code := chattest.CloseCode(t, conn, 15*time.Second); code != protocol.ClosePolicy {
		t.Fatalf("close code %d, want 1008", code)
	}
}

func TestFloodIsRateLimited(t *testing.T) {
	limited := ownChat(t, "chat-limited", "RATE_LIMIT=2", "RATE_BURST=5")
	r := chattest.Room()
	cl := dial(t, limited, "flooder")
	chattest.Join(t, cl, r)
	ctx := context.Background()
	accepted, limitedN := 0, 0
	for i := 0; i < 20; i++ {
		_, err := cl.Send(ctx, r, "spam")
		var pe *protocol.Error
		switch {
		case err == nil:
			accepted++
		case errors.As(err, &pe) && pe.Code == protocol.CodeRateLimited:
			limitedN++
		default:
			t.Fatalf("send %d: %v", i, err)
		}
	}
	// The burst of 5 plus at most a token or two refilled during the loop.
	if accepted < 5 || accepted > 7 || limitedN != 20-accepted {
		t.Fatalf("accepted %d, rate limited %d of 20; want about the burst of 5 accepted", accepted, limitedN)
	}
	if code := cl.Stats().CloseCodes; len(code) != 0 {
		t.Fatalf("the flood closed the connection: %v", code)
	}
}

func TestSlowConsumerIsClosedAndTheRoomDoesNotWait(t *testing.T) {
	small := ownChat(t, "chat-small-queue", "SEND_QUEUE=8", "MAX_MESSAGE_BYTES=65536")
	r := chattest.Room()
	// The slow member joins and then never reads; its tiny receive buffer
	// makes the server's writes block soon.
	d := websocket.Dialer{NetDial: func(network, addr string) (net.Conn, error) {
		c, err := net.Dial(network, addr)
		if err == nil {
			err = c.(*net.TCPConn).SetReadBuffer(4096)
		}
		return c, err
	}}
	slow, _, err := d.Dial(small.WSURL()+"?token="+token(t, "slow", time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	slow.WriteJSON(protocol.ClientFrame{Op: protocol.OpJoin, Room: r})
	fast := dial(t, small, "fast")
	chattest.Join(t, fast, r)
	sender := dial(t, small, "sender")
	chattest.Join(t, sender, r)
	text := strings.Repeat("y", 60000)
	const n = 200
	for i := 0; i < n; i++ {
		chattest.Send(t, sender, r, text)
	}
	if got := chattest.Seqs(chattest.Receive(t, fast, n, 30*time.Second)); len(got) != n {
		t.Fatalf("fast member got %d of %d", len(got), n)
	}
	if v := chattest.Metric(t, small.URL(), "chat_slow_consumers_total"); v < 1 {
		t.Fatalf("chat_slow_consumers_total = %v, want >= 1", v)
	}
	// What reached the slow member before the close ends in 1013 (or, if its
	// socket buffers were full, without a close frame).
	slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := slow.ReadMessage()
		var ce *websocket.CloseError
		if errors.As(err, &ce) && ce.Code != protocol.CloseTryAgainLate {
			t.Fatalf("slow consumer closed with %d, want 1013", ce.Code)
		}
		if err != nil {
			break
		}
	}
}

func TestSIGTERMDrainsThenExitsZero(t *testing.T) {
	c := ownChat(t, "chat-drain", "DRAIN_DELAY=1s", "DRAIN_TIMEOUT=1s")
	cl, err := client.Dial(context.Background(), client.Options{URL: c.WSURL(), Token: token(t, "alice", time.Hour), NoReconnect: true})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := c.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Unready as soon as the signal is handled (the process gets it
	// asynchronously), still accepting during DRAIN_DELAY.
	retry.DoWithRetry(t, "/ready 503 after SIGTERM", 20, 10*time.Millisecond, func() (string, error) {
		if code := chattest.Get(t, c.URL()+"/ready"); code != http.StatusServiceUnavailable {
			return "", fmt.Errorf("/ready during drain = %d, want 503", code)
		}
		return "", nil
	})
	if since := time.Since(start); since > 500*time.Millisecond {
		t.Fatalf("unready only %s after SIGTERM", since)
	}
	late, err := client.Dial(context.Background(), client.Options{URL: c.WSURL(), Token: token(t, "bob", time.Hour), NoReconnect: true})
	if err != nil {
		t.Fatalf("a connection during DRAIN_DELAY was refused: %v", err)
	}
	<-cl.Done()
	<-late.Done()
	took := time.Since(start)
	for _, x := range []*client.Client{cl, late} {
		if codes := x.Stats().CloseCodes; codes[protocol.CloseGoingAway] != 1 {
			t.Fatalf("close codes %v, want one 1001", codes)
		}
	}
	if took < time.Second {
		t.Fatalf("connections closed after %s, before DRAIN_DELAY", took)
	}
	if err := c.Wait(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	if c.ExitCode() != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", c.ExitCode())
	}
	t.Logf("drain: connections closed %s after SIGTERM", took.Round(time.Millisecond))
}

func TestHealthReadyMetricsAndHistoryEndpoints(t *testing.T) {
	r := chattest.Room()
	cl := dial(t, env.a, "alice")
	chattest.Join(t, cl, r)
	for i := 0; i < 5; i++ {
		chattest.Send(t, cl, r, "m")
	}
	waitStored(t, r, 5)
	for _, path := range []string{"/health", "/ready", "/metrics"} {
		if code := chattest.Get(t, env.a.URL()+path); code != http.StatusOK {
			t.Errorf("%s = %d, want 200", path, code)
		}
	}
	for _, name := range []string{"websocket_connections_active", "websocket_messages_total", "websocket_broadcast_latency_seconds_count", "chat_messages_delivered_total"} {
		if v := chattest.Metric(t, env.a.URL(), name); v <= 0 {
			t.Errorf("%s = %v, want > 0", name, v)
		}
	}

	req, _ := http.NewRequest("GET", env.a.URL()+"/rooms/"+r+"/messages?before=5&limit=2", nil)
	req.Header.Set("Authorization", "Bearer "+token(t, "alice", time.Hour))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Room     string                 `json:"room"`
		Messages []protocol.ServerFrame `json:"messages"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 200 {
		t.Fatalf("history: %d %v", resp.StatusCode, err)
	}
	if body.Room != r || len(body.Messages) != 2 || body.Messages[0].Seq != 3 || body.Messages[1].Seq != 4 || body.Messages[0].Op != "message" {
		t.Fatalf("history before=5 limit=2 = %+v, want seqs 3 and 4", body)
	}
	for _, bad := range []string{"?limit=0", "?before=x", "?limit=501"} {
		req, _ := http.NewRequest("GET", env.a.URL()+"/rooms/"+r+"/messages"+bad, nil)
		req.Header.Set("Authorization", "Bearer "+token(t, "alice", time.Hour))
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusBadRequest {
			t.Errorf("history%s: %v %v, want 400", bad, resp.StatusCode, err)
		}
	}
	if code := chattest.Get(t, env.a.URL()+"/rooms/"+r+"/messages"); code != http.StatusUnauthorized {
		t.Errorf("history without a token = %d, want 401", code)
	}
}

// The server pings every PING_INTERVAL and closes a connection silent for
// its read timeout (2 × PING_INTERVAL + 5 s): a client's pongs keep it open.
func TestServerKeepsClientsThatAnswerPingsAndDropsSilentOnes(t *testing.T) {
	c := ownChat(t, "chat-ping", "PING_INTERVAL=1s")
	pings := make(chan struct{}, 100)
	answering := chattest.Raw(t, c.WSURL(), token(t, "answering", time.Hour))
	answering.SetPingHandler(func(data string) error {
		pings <- struct{}{}
		return answering.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	silent := chattest.Raw(t, c.WSURL(), token(t, "silent", time.Hour))
	silent.SetPingHandler(func(string) error { return nil })
	pongs := make(chan string, 1)
	answering.SetPongHandler(func(data string) error { pongs <- data; return nil })
	connected := time.Now()
	answeringEnded, silentEnded := readUntilClosed(answering), readUntilClosed(silent)
	for i := 0; i < 2; i++ {
		select {
		case <-pings:
		case <-time.After(5 * time.Second):
			t.Fatalf("got %d pings in 5 s with PING_INTERVAL=1s, want 2", i)
		}
	}
	// The client may ping too: the server answers with the same payload.
	if err := answering.WriteControl(websocket.PingMessage, []byte("are you there"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-pongs:
		if got != "are you there" {
			t.Errorf("pong %q, want the ping's payload", got)
		}
	case <-time.After(5 * time.Second):
		t.Error("no pong within 5 s of the client's ping")
	}
	select {
	case <-silentEnded:
		if took := time.Since(connected); took < 6*time.Second {
			t.Fatalf("the silent client was closed after %s, before its read timeout of 7 s", took)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the client that never answered pings was still connected 15 s later (read timeout 7 s)")
	}
	select {
	case err := <-answeringEnded:
		t.Fatalf("the client that answered every ping was closed after %s: %v", time.Since(connected), err)
	default:
	}
}

// An idle client that answers pings holds no goroutine on the server: its
// pong is read on a worker that lets go of it, where gorilla would go on to
// wait there for the next data frame (a goroutine per idle client again).
func TestIdleClientsThatAnswerPingsHoldNoGoroutine(t *testing.T) {
	// Pings come every 3 s and an idle worker ends after 2 s: between the
	// bursts of pongs no worker is left, unless a session holds one.
	c := ownChat(t, "chat-idle-pings", "PING_INTERVAL=3s")
	base := chattest.Metric(t, c.URL(), "go_goroutines")
	const n = 40
	var pongs atomic.Int64
	for i := range n {
		conn := chattest.Raw(t, c.WSURL(), token(t, fmt.Sprintf("idle-%d", i), time.Hour))
		conn.SetReadDeadline(time.Time{})
		conn.SetPingHandler(func(data string) error {
			pongs.Add(1)
			return conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
		})
		readUntilClosed(conn)
	}
	var held float64
	retry.DoWithRetry(t, "every client answered 2 pings and the server holds under a quarter of a goroutine each", 80, 250*time.Millisecond, func() (string, error) {
		held = chattest.Metric(t, c.URL(), "go_goroutines") - base
		if pongs.Load() < 2*n || held >= n/4 {
			return "", fmt.Errorf("%d pongs, %.0f goroutines more than before the %d clients", pongs.Load(), held, n)
		}
		return "", nil
	})
	t.Logf("%d idle clients answering pings: %.0f goroutines more than before them", n, held)
}

// A frame that never completes counts as silence: the session's tick ends
// it at the read timeout (7 s here, under the default FRAME_TIMEOUT of 10 s,
// which bounds a frame begun: TestAFrameTricklingInIsClosedAfterFrameTimeout),
// and the worker that waits for the rest of the frame with it.
func TestAFrameThatNeverCompletesEndsWithTheReadTimeout(t *testing.T) {
	c := ownChat(t, "chat-trickle", "PING_INTERVAL=1s")
	conn := chattest.Raw(t, c.WSURL(), token(t, "trickler", time.Hour))
	conn.SetPingHandler(func(string) error { return nil })
	conn.SetReadDeadline(time.Time{}) // only the server may end it
	connected := time.Now()
	ended := readUntilClosed(conn)
	// A masked text frame of 100 bytes: its header, key and 10 of them.
	partial := append([]byte{0x81, 0x80 | 100, 1, 2, 3, 4}, make([]byte, 10)...)
	if _, err := conn.NetConn().Write(partial); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ended:
		if took := time.Since(connected); took < 6*time.Second {
			t.Fatalf("closed after %s, before the read timeout of 7 s: %v", took, err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("a client with a frame left unfinished was still connected 15 s later (read timeout 7 s)")
	}
}

// readUntilClosed reads conn (so its control frames are handled) until it
// fails, and reports the error.
func readUntilClosed(conn *websocket.Conn) <-chan error {
	ended := make(chan error, 1)
	go func() {
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				ended <- err
				return
			}
		}
	}()
	return ended
}

// A client that sends a burst faster than it reads the replies is slowed
// down, not closed: its own frames' replies wait behind the reader, so a
// burst of refusals (handled far faster than written) cannot fill the send
// queue. With one CPU the writer cannot run while the reader handles a
// buffered burst, which is how the flood through kind was closed with 1013.
func TestABurstOfRefusedSendsIsSlowedNotClosedAsASlowConsumer(t *testing.T) {
	one := ownChat(t, "chat-one-cpu", "GOMAXPROCS=1", "RATE_LIMIT=1", "RATE_BURST=1", "SEND_QUEUE=16")
	conn := chattest.Raw(t, one.WSURL(), token(t, "burst", time.Hour))
	r := chattest.Room()
	conn.WriteJSON(protocol.ClientFrame{Op: protocol.OpJoin, Room: r})
	if f := chattest.Next(t, conn); f.Op != protocol.OpJoined {
		t.Fatalf("join: %+v", f)
	}
	// 2,000 sends in one TCP write: masked client frames (a zero mask key
	// leaves the payload as it is), each under 126 bytes.
	const n = 2000
	var burst []byte
	for i := range n {
		payload := fmt.Sprintf(`{"op":"send","room":%q,"id":"b%d","text":"burst"}`, r, i)
		burst = append(burst, 0x81, 0x80|byte(len(payload)), 0, 0, 0, 0)
		burst = append(burst, payload...)
	}
	if _, err := conn.NetConn().Write(burst); err != nil {
		t.Fatal(err)
	}
	replies := map[string]bool{}
	for len(replies) < n {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		var f protocol.ServerFrame
		if err := conn.ReadJSON(&f); err != nil {
			t.Fatalf("after %d of %d replies: %v", len(replies), n, err)
		}
		switch {
		case f.Op == protocol.OpAck:
			replies[f.ID] = true
		case f.Op == protocol.OpError && f.Code == protocol.CodeRateLimited:
			replies[f.Ref] = true
		case f.Op != protocol.OpMessage:
			t.Fatalf("unexpected frame %+v", f)
		}
	}
	if v := chattest.Metric(t, one.URL(), "chat_slow_consumers_total"); v != 0 {
		t.Fatalf("chat_slow_consumers_total = %v, want 0", v)
	}
}
