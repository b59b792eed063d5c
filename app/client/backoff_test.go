package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-dev/switchboard/app/auth"
)

// handshakes is an httptest server that records every handshake's time
// and request, answers the n-th (1 for the first) with answer(n, w) when
// that writes a status, and otherwise upgrades, selecting switchboard as
// the chat server does, welcomes and reads until the client goes.
type handshakes struct {
	*httptest.Server
	mu     sync.Mutex
	at     []time.Time
	reqs   []*http.Request
	answer func(n int, w http.ResponseWriter) bool // true: answered, no upgrade
	conns  chan *websocket.Conn
}

func newHandshakes(t *testing.T, answer func(n int, w http.ResponseWriter) bool) *handshakes {
	h := &handshakes{answer: answer, conns: make(chan *websocket.Conn, 16)}
	up := websocket.Upgrader{Subprotocols: []string{auth.Subprotocol}}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.at = append(h.at, time.Now())
		h.reqs = append(h.reqs, r)
		n := len(h.at)
		h.mu.Unlock()
		if h.answer != nil && h.answer(n, w) {
			return
		}
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		conn.WriteMessage(websocket.TextMessage, []byte(`{"op":"welcome","instance":"fake","user":"alice"}`))
		h.conns <- conn
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				return
			}
		}
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *handshakes) times() []time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]time.Time(nil), h.at...)
}

func refuse(status int, retryAfter string) func(w http.ResponseWriter) bool {
	return func(w http.ResponseWriter) bool {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		http.Error(w, `{"error":"refused"}`, status)
		return true
	}
}

// The token travels as the subprotocol bearer.<jwt> next to switchboard,
// never in the URL (which proxies and access logs keep) nor in another
// header.
func TestTheTokenTravelsInTheSubprotocolHeaderNotTheURL(t *testing.T) {
	const tok = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
	h := newHandshakes(t, nil)
	dialServer(t, h.Server, Options{Token: tok})
	r := h.reqs[0]
	if got := r.Header.Values("Sec-WebSocket-Protocol"); strings.Join(got, ",") != "switchboard, bearer."+tok {
		t.Errorf("Sec-WebSocket-Protocol %q, want switchboard and bearer.<token>", got)
	}
	if strings.Contains(r.URL.String(), tok) || r.URL.RawQuery != "" {
		t.Errorf("the URL %s carries the token or a query", r.URL)
	}
	if a := r.Header.Get("Authorization"); a != "" {
		t.Errorf("Authorization %q: the token belongs in the subprotocol only", a)
	}
	// The server this tests against would take the token from it.
	if got, err := auth.TokenFromRequest(r); err != nil || got != tok {
		t.Errorf("the server reads %q, %v from the handshake, want the token", got, err)
	}
}

// A 429 (or 503) with Retry-After holds the next attempt back that long,
// at Dial and at a reconnect; without Retry-After the attempts still wait
// (the backoff, at least MinBackoff): never a tight loop.
func TestARetryAfterDelaysTheNextDial(t *testing.T) {
	t.Run("429 Retry-After: 2 at Dial", func(t *testing.T) {
		h := newHandshakes(t, func(n int, w http.ResponseWriter) bool {
			return n == 1 && refuse(http.StatusTooManyRequests, "2")(w)
		})
		dialServer(t, h.Server, Options{})
		at := h.times()
		if len(at) != 2 {
			t.Fatalf("%d handshakes, want 2", len(at))
		}
		if d := at[1].Sub(at[0]); d < 2*time.Second || d > 3*time.Second {
			t.Errorf("the second attempt came %s after the 429, want 2s to 2.5s (Retry-After and its jitter)", d)
		}
	})
	t.Run("503 Retry-After: 1 at a reconnect", func(t *testing.T) {
		h := newHandshakes(t, func(n int, w http.ResponseWriter) bool {
			return n == 2 && refuse(http.StatusServiceUnavailable, "1")(w)
		})
		dialServer(t, h.Server, Options{})
		within(t, h.conns, 5*time.Second, "the first connection").Close() // the client reconnects
		within(t, h.conns, 10*time.Second, "the reconnect")
		at := h.times()
		if len(at) != 3 {
			t.Fatalf("%d handshakes, want 3", len(at))
		}
		if d := at[2].Sub(at[1]); d < time.Second {
			t.Errorf("the attempt after the 503 came %s after it, want at least its Retry-After of 1s", d)
		}
	})
	t.Run("429 without Retry-After", func(t *testing.T) {
		h := newHandshakes(t, func(n int, w http.ResponseWriter) bool {
			return n <= 3 && refuse(http.StatusTooManyRequests, "")(w)
		})
		const min = 50 * time.Millisecond
		dialServer(t, h.Server, Options{MinBackoff: min, MaxBackoff: time.Second})
		at := h.times()
		for i := 1; i < len(at); i++ {
			if d := at[i].Sub(at[i-1]); d < min {
				t.Errorf("attempt %d came %s after a 429, want at least MinBackoff (%s)", i+1, d, min)
			}
		}
	})
}

func TestRetryAfterHeader(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                              0,
		"2":                             2 * time.Second,
		" 0 ":                           0,
		"-5":                            0,
		"99999999999999":                maxRetryAfter,
		"soon":                          0,
		"Mon, 23 Nov 2026 10:00:30 GMT": 30 * time.Second,
		"Mon, 23 Nov 2026 09:00:00 GMT": 0,
	} {
		h := http.Header{}
		if v != "" {
			h.Set("Retry-After", v)
		}
		if got := retryAfter(h, now); got != want {
			t.Errorf("Retry-After %q: %s, want %s", v, got, want)
		}
	}
}

// A send refused by a quota (rate_limited with retry_after_ms) is not
// stored: the client sends it again, with the same id, once that wait has
// passed, and Send returns its ack; it is acked, and sent, once more only.
func TestARateLimitedSendIsResentAfterRetryAfter(t *testing.T) {
	const wait = 400 * time.Millisecond
	type sent struct {
		id string
		at time.Time
	}
	sends := make(chan sent, 8)
	s := serve(t, func(n int, p *peer) {
		p.next() // the join
		p.send(`{"op":"joined","room":"lobby","seq":0}`)
		for i := 0; ; i++ {
			var f map[string]any
			if p.conn.ReadJSON(&f) != nil || f["op"] != "send" {
				return // the client has gone
			}
			id, _ := f["id"].(string)
			sends <- sent{id, time.Now()}
			if i == 0 {
				p.send(fmt.Sprintf(`{"op":"error","code":"rate_limited","message":"user_sends: 1 per 1m0s; retry later","ref":%q,"quota":"user_sends","retry_after_ms":%d}`, id, wait.Milliseconds()))
				continue
			}
			p.send(fmt.Sprintf(`{"op":"ack","room":"lobby","id":%q,"seq":1}`, id))
		}
	})
	c := s.dial(t, Options{})
	if _, err := c.Join(context.Background(), "lobby"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	seq, err := c.Send(ctx, "lobby", "hi")
	if err != nil || seq != 1 {
		t.Fatalf("Send = %d, %v: want the ack of the resend, seq 1", seq, err)
	}
	first := within(t, sends, time.Second, "the first send")
	second := within(t, sends, time.Second, "the resend")
	if second.id != first.id {
		t.Errorf("resent with id %s, want the same id %s (dedupe)", second.id, first.id)
	}
	if d := second.at.Sub(first.at); d < wait {
		t.Errorf("resent %s after the refusal, want at least retry_after_ms (%s)", d, wait)
	}
	select {
	case again := <-sends:
		t.Errorf("sent a third time (%s) after the ack", again.id)
	case <-time.After(2 * wait):
	}
	if st := c.Stats(); st.Errors["rate_limited"] != 1 {
		t.Errorf("Stats.Errors %v, want one rate_limited", st.Errors)
	}
}

// A rate_limited frame without retry_after_ms (the per-connection
// RATE_LIMIT) still answers the send with the error.
func TestARateLimitedSendWithoutRetryAfterFails(t *testing.T) {
	s := serve(t, func(n int, p *peer) {
		f := p.next()
		p.send(fmt.Sprintf(`{"op":"error","code":"rate_limited","message":"too many messages; slow down","ref":%q}`, f["id"]))
		p.wait()
	})
	c := s.dial(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Send(ctx, "lobby", "hi"); err == nil || !strings.Contains(err.Error(), "rate_limited") {
		t.Fatalf("Send: %v, want the rate_limited error", err)
	}
}

// A join refused by a join quota is repeated after retry_after_ms, and
// Join returns the answer to the repeat.
func TestARateLimitedJoinIsRetriedAfterRetryAfter(t *testing.T) {
	const wait = 300 * time.Millisecond
	joins := make(chan time.Time, 8)
	s := serve(t, func(n int, p *peer) {
		for i := 0; ; i++ {
			if f := p.next(); f["op"] != "join" {
				return
			}
			joins <- time.Now()
			if i == 0 {
				p.send(fmt.Sprintf(`{"op":"error","code":"rate_limited","message":"user_joins: 600 per 1m0s; retry later","quota":"user_joins","room":"lobby","retry_after_ms":%d}`, wait.Milliseconds()))
				continue
			}
			p.send(`{"op":"joined","room":"lobby","seq":7}`)
			p.wait()
			return
		}
	})
	c := s.dial(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	seq, err := c.Join(ctx, "lobby")
	if err != nil || seq != 7 {
		t.Fatalf("Join = %d, %v: want the answer to the retry, seq 7", seq, err)
	}
	first, second := within(t, joins, time.Second, "the join"), within(t, joins, time.Second, "the retry")
	if d := second.Sub(first); d < wait {
		t.Errorf("join retried %s after the refusal, want at least retry_after_ms (%s)", d, wait)
	}
}

// A history call refused with 429 (QUOTA_USER_HISTORY) is retried after
// its Retry-After, not given up.
func TestAHistoryCallRefused429IsRetriedAfterRetryAfter(t *testing.T) {
	var mu sync.Mutex
	var calls []time.Time
	s := serve(t, func(n int, p *peer) {
		p.next()
		p.send(`{"op":"joined","room":"lobby","seq":3}`)
		p.send(`{"op":"error","code":"history_gap","room":"lobby","from":1,"to":2,"message":"not kept"}`)
		p.send(msg("lobby", 3))
		p.wait()
	})
	s.mux.HandleFunc("GET /rooms/{room}/messages", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls = append(calls, time.Now())
		n := len(calls)
		mu.Unlock()
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			http.Error(w, `{"error":"user_history: 120 per 1m0s","quota":"user_history"}`, http.StatusTooManyRequests)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"room": "lobby", "messages": []json.RawMessage{json.RawMessage(msg("lobby", 1)), json.RawMessage(msg("lobby", 2))}})
	})
	c := s.dial(t, Options{FillGaps: true})
	if _, err := c.Resume(context.Background(), "lobby", 0); err != nil {
		t.Fatal(err)
	}
	if got := messages(t, c, 3); got[0] != 1 || got[1] != 2 || got[2] != 3 {
		t.Fatalf("messages %v, want [1 2 3]", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 2 || calls[1].Sub(calls[0]) < time.Second {
		t.Fatalf("history calls at %v: want a retry at least 1s (Retry-After) after the 429", calls)
	}
}
