package tests

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	http_helper "github.com/gruntwork-io/terratest/modules/http-helper"

	"github.com/switchboard-dev/switchboard/app/chattest"
	"github.com/switchboard-dev/switchboard/app/protocol"
)

// Bad input through the load balancer gets the documented refusal, and every
// instance is still healthy afterwards.
func badInput(t *testing.T, s *suite) {
	chattest.RefusesBadHandshakes(t, s.wsURL, s.Origin(), func(user string, ttl time.Duration) string {
		return s.token(t, user, ttl)
	})

	tok := s.token(t, "mallory", time.Hour)
	chattest.RefusesBadFrames(t, chattest.Raw(t, s.wsURL, tok), chattest.Room())

	big := chattest.Raw(t, s.wsURL, tok)
	big.WriteMessage(websocket.TextMessage, []byte(`{"op":"send","room":"lobby","text":"`+strings.Repeat("x", 1<<20)+`"}`))
	if code := chattest.CloseCode(t, big, 10*time.Second); code != protocol.CloseTooLarge {
		t.Errorf("oversize frame: close code %d, want 1009", code)
	}

	flood := chattest.Raw(t, s.wsURL, tok)
	room := chattest.Room()
	flood.WriteJSON(protocol.ClientFrame{Op: protocol.OpJoin, Room: room})
	for i := 0; i < 300; i++ {
		flood.WriteJSON(protocol.ClientFrame{Op: protocol.OpSend, Room: room, Text: "flood", ID: fmt.Sprintf("f%d", i)})
	}
	limited := 0
	for i := 0; i < 301 && limited == 0; i++ {
		if f := chattest.Next(t, flood); f.Op == protocol.OpError && f.Code == protocol.CodeRateLimited {
			limited++
		}
	}
	if limited == 0 {
		t.Errorf("300 sends in a burst: no rate_limited error")
	}

	for _, in := range s.instances(t) {
		http_helper.HttpGetWithRetry(t, in.URL+"/health", nil, 200, `{"instance":"`+in.ID+`","status":"ok"}`, 20, 100*time.Millisecond)
	}
	report.Logf(t, "bad input: 6 handshake cases, %d bad frames, oversize, flood: all refused as documented; every instance healthy", len(chattest.BadFrames("")))
}

// /health, /ready and /metrics answer on each instance and the metrics follow
// what clients do; the load balancer does not expose /metrics.
func endpoints(t *testing.T, s *suite) {
	for _, in := range s.instances(t) {
		for _, path := range []string{"/health", "/ready", "/metrics"} {
			if code := chattest.Get(t, in.URL+path); code != http.StatusOK {
				t.Errorf("%s%s: %d, want 200", in.URL, path, code)
			}
		}
	}
	if code := chattest.Get(t, s.Endpoint()+"/metrics"); code != http.StatusNotFound {
		t.Errorf("%s/metrics through the load balancer: %d, want 404", s.Endpoint(), code)
	}

	// A client's connection and its accepted message show in the gauge and
	// counter of the instance it landed on, and its connection goes again.
	// (Which instance that is depends on the balancer: on kind two NGINX pods
	// each order the chat pods their own way.)
	urls := map[string]string{}
	conns, accepted := map[string]float64{}, map[string]float64{}
	for _, in := range s.instances(t) {
		urls[in.ID] = in.URL
		conns[in.ID] = chattest.Metric(t, in.URL, "websocket_connections_active")
		accepted[in.ID] = chattest.Metric(t, in.URL, `chat_messages_received_total{result="accepted"`)
	}
	c := s.dial(t, "metrics", 300)
	on, url := c.Instance(), urls[c.Instance()]
	until(t, "websocket_connections_active rises by one", 10*time.Second, func() error {
		return want(chattest.Metric(t, url, "websocket_connections_active"), conns[on]+1)
	})
	room := chattest.Room()
	chattest.Join(t, c, room)
	chattest.Send(t, c, room, "counted")
	if err := want(chattest.Metric(t, url, `chat_messages_received_total{result="accepted"`), accepted[on]+1); err != nil {
		t.Errorf("accepted messages: %v", err)
	}
	c.Close()
	until(t, "websocket_connections_active falls back", 10*time.Second, func() error {
		return want(chattest.Metric(t, url, "websocket_connections_active"), conns[on])
	})
	report.Logf(t, "endpoints: /health, /ready, /metrics 200 on every instance; /metrics 404 through the load balancer; connections and accepted messages counted on %s", on)
}
