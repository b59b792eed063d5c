package server_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-dev/switchboard/app/chattest"
	"github.com/switchboard-dev/switchboard/app/local"
	"github.com/switchboard-dev/switchboard/app/protocol"
)

// dialWS upgrades a plain WebSocket for user, returning the refusal if any.
func dialWS(t *testing.T, c *local.Chat, user string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	conn, resp, err := websocket.DefaultDialer.Dial(c.WSURL()+"?token="+token(t, user, time.Hour), nil)
	if conn != nil {
		t.Cleanup(func() { conn.Close() })
	}
	return conn, resp, err
}

// awaitMetric waits until series reads want on c.
func awaitMetric(t *testing.T, c *local.Chat, series string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for v := chattest.Metric(t, c.URL(), series); v != want; v = chattest.Metric(t, c.URL(), series) {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v after 10 s, want %v", series, v, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// MAX_CONNECTIONS sessions per instance: the next upgrade is refused with
// 503, Retry-After and a JSON error before any session exists; a slot
// freed is taken again; and dials racing for the slots never get past the
// cap.
func TestMaxConnectionsRefusesTheNextUpgradeWith503(t *testing.T) {
	c := ownChat(t, "chat-capped", "MAX_CONNECTIONS=3")
	var conns []*websocket.Conn
	for i := range 3 {
		conn, _, err := dialWS(t, c, fmt.Sprint("user-", i))
		if err != nil {
			t.Fatalf("connection %d of 3: %v", i+1, err)
		}
		conns = append(conns, conn)
	}
	_, resp, err := dialWS(t, c, "fourth")
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("the 4th connection with MAX_CONNECTIONS=3: %v, %v; want 503", resp, err)
	}
	var body map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body["error"] == "" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("refusal: body %v (%v), Retry-After %q; want a JSON error and Retry-After", body, err, resp.Header.Get("Retry-After"))
	}
	if v := chattest.Metric(t, c.URL(), `chat_connections_refused_total{reason="capacity"}`); v != 1 {
		t.Fatalf(`chat_connections_refused_total{reason="capacity"} = %v, want 1`, v)
	}
	if v := chattest.Metric(t, c.URL(), "websocket_connections_active"); v != 3 {
		t.Fatalf("websocket_connections_active = %v after the refusal, want 3", v)
	}

	conns[0].Close()
	awaitMetric(t, c, "websocket_connections_active", 2)
	if _, _, err := dialWS(t, c, "fifth"); err != nil {
		t.Fatalf("a connection once one of the 3 closed: %v", err)
	}
	for _, conn := range conns[1:] {
		conn.Close()
	}
	awaitMetric(t, c, "websocket_connections_active", 1)

	// 20 dials at once for the 2 slots left: 2 get in, 18 get 503.
	var mu sync.Mutex
	admitted, refused := 0, 0
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, resp, err := dialWS(t, c, fmt.Sprint("racer-", i))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				admitted++
			case resp != nil && resp.StatusCode == http.StatusServiceUnavailable:
				refused++
			default:
				t.Errorf("racer %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if admitted != 2 || refused != 18 {
		t.Fatalf("20 racing dials for 2 free slots: %d admitted, %d refused; want 2 and 18", admitted, refused)
	}
	// A session counts itself once served, just after its 101 went out.
	chattest.Eventually(t, 5*time.Second, "websocket_connections_active = 3", func() bool {
		return chattest.Metric(t, c.URL(), "websocket_connections_active") == 3
	})
}

// A frame that has begun must arrive whole within FRAME_TIMEOUT: a client
// trickling one a byte every 500 ms is closed with 1008 about a second
// after it began, while a client beside it is served throughout.
func TestAFrameTricklingInIsClosedAfterFrameTimeout(t *testing.T) {
	c := ownChat(t, "chat-frame-timeout", "FRAME_TIMEOUT=1s")
	r := chattest.Room()
	normal := dial(t, c, "normal")
	chattest.Join(t, normal, r)

	conn := chattest.Raw(t, c.WSURL(), token(t, "trickler", time.Hour))
	conn.SetReadDeadline(time.Time{})
	closed := readUntilClosed(conn)
	// A masked text frame with a 100-byte payload: a zero key leaves it as is.
	payload := fmt.Sprintf(`{"op":"send","room":%q,"id":"t1","text":"%080d"}`, r, 0)
	frame := append([]byte{0x81, 0x80 | byte(len(payload)), 0, 0, 0, 0}, payload...)
	start := time.Now()
	if _, err := conn.NetConn().Write(frame[:3]); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for _, b := range frame[3:] {
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
			if _, err := conn.NetConn().Write([]byte{b}); err != nil {
				return
			}
		}
	}()

	served := 0
	deadline := time.After(5 * time.Second)
	for {
		select {
		case err := <-closed:
			took := time.Since(start)
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != protocol.ClosePolicy {
				t.Fatalf("the trickling client ended with %v after %s, want a 1008 close", err, took)
			}
			if took < 900*time.Millisecond || took > 2500*time.Millisecond {
				t.Fatalf("the trickling client was closed %s after its frame began, want about FRAME_TIMEOUT (1s)", took)
			}
			if served < 3 {
				t.Fatalf("the other client had %d sends acked meanwhile", served)
			}
			chattest.Send(t, normal, r, "after")
			t.Logf("closed with 1008 %s after the frame began; %d sends of the other client acked meanwhile", took.Round(time.Millisecond), served)
			return
		case <-time.After(100 * time.Millisecond):
			chattest.Send(t, normal, r, "meanwhile")
			served++
		case <-deadline:
			t.Fatal("the trickling client was still connected 5 s after its frame began (FRAME_TIMEOUT=1s)")
		}
	}
}
