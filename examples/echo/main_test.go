package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// A client's message comes back, and the gauge counts the open connection
// while it lasts.
func TestEchoesAndCountsConnections(t *testing.T) {
	s := newServer(nil)
	ts := httptest.NewServer(s.routes())
	defer ts.Close()
	c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(ts.URL, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WriteMessage(websocket.TextMessage, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.ReadMessage(); err != nil || string(msg) != "hello" {
		t.Fatalf("read %q, %v: want hello", msg, err)
	}
	if got := gauge(t, ts.URL); got != "websocket_connections_active 1" {
		t.Errorf("with one client: %q", got)
	}
	c.Close()
	deadline := time.Now().Add(2 * time.Second)
	for gauge(t, ts.URL) != "websocket_connections_active 0" {
		if time.Now().After(deadline) {
			t.Fatal("the gauge still counts a closed connection")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Draining, the server is unready and refuses new clients, so the edge
// sends them elsewhere.
func TestDrainingIsUnreadyAndRefusesClients(t *testing.T) {
	s := newServer(nil)
	ts := httptest.NewServer(s.routes())
	defer ts.Close()
	if code := status(t, ts.URL+"/ready"); code != http.StatusOK {
		t.Fatalf("/ready %d before the drain", code)
	}
	s.draining.Store(true)
	if code := status(t, ts.URL+"/ready"); code != http.StatusServiceUnavailable {
		t.Errorf("/ready %d while draining, want 503", code)
	}
	if code := status(t, ts.URL+"/health"); code != http.StatusOK {
		t.Errorf("/health %d while draining, want 200: the pod is alive", code)
	}
	if _, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(ts.URL, "http")+"/ws", nil); err == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("handshake while draining: %v, want 503", err)
	}
}

// Only the listed origins may connect from a browser.
func TestRefusesOtherOrigins(t *testing.T) {
	ts := httptest.NewServer(newServer([]string{"https://echo.example.com"}).routes())
	defer ts.Close()
	url := "ws" + strings.TrimPrefix(ts.URL, "http") + "/ws"
	if _, _, err := websocket.DefaultDialer.Dial(url, http.Header{"Origin": {"https://evil.example.com"}}); err == nil {
		t.Error("another origin connected")
	}
	c, _, err := websocket.DefaultDialer.Dial(url, http.Header{"Origin": {"https://echo.example.com"}})
	if err != nil {
		t.Fatalf("the allowed origin: %v", err)
	}
	c.Close()
}

func status(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// gauge is the connections gauge's line of /metrics.
func gauge(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "websocket_connections_active ") {
			return line
		}
	}
	return ""
}
