package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-dev/switchboard/app/auth"
	"github.com/switchboard-dev/switchboard/app/broker"
	"github.com/switchboard-dev/switchboard/app/chattest"
	"github.com/switchboard-dev/switchboard/app/config"
	"github.com/switchboard-dev/switchboard/app/hub"
	"github.com/switchboard-dev/switchboard/app/metrics"
	"github.com/switchboard-dev/switchboard/app/protocol"
)

// These tests run a Server in the test process, on fakes of Redis and
// Postgres that count their pings; the integration tests beside them run
// the chatserver binary on real ones.

const unitSecret = "unit-test-secret-0123456789abcdef-0123"

type fakeBroker struct {
	pings atomic.Int64
	down  atomic.Bool
}

func (b *fakeBroker) Publish(context.Context, string, string, string, string, time.Time) (broker.Accepted, error) {
	return broker.Accepted{}, errors.New("fake broker: no publishing")
}

func (b *fakeBroker) Ping(context.Context) error {
	b.pings.Add(1)
	if b.down.Load() {
		return errors.New("connection refused")
	}
	return nil
}

type fakeArchive struct{ pings atomic.Int64 }

func (a *fakeArchive) Ping(context.Context) error { a.pings.Add(1); return nil }

func (a *fakeArchive) Before(context.Context, string, int64, int) ([]protocol.Message, error) {
	return nil, nil
}

func newUnitServer(t *testing.T) (*Server, *fakeBroker, *fakeArchive) {
	t.Helper()
	cfg := config.Defaults()
	cfg.JWTSecret = []byte(unitSecret)
	cfg.InstanceID = "unit"
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := hub.New(nil, nil, nil, metrics.New(), log, hub.Options{})
	b, a := &fakeBroker{}, &fakeArchive{}
	s, err := New(cfg, h, b, a, metrics.New(), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, b, a
}

// /ready answers from the last dependency check (one a second in
// production) and draining as it is now: 100 probes ping nothing.
func TestReadyAnswersFromTheLastCheckWithoutPinging(t *testing.T) {
	s, b, a := newUnitServer(t)
	handler := s.Handler()
	ready := func() (int, readiness) {
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, httptest.NewRequest("GET", "/ready", nil))
		var rd readiness
		if err := json.Unmarshal(rec.Body.Bytes(), &rd); err != nil {
			t.Fatalf("/ready: %v: %s", err, rec.Body)
		}
		return rec.Code, rd
	}
	pings := func() int64 { return b.pings.Load() + a.pings.Load() }

	if code, rd := ready(); code != http.StatusServiceUnavailable || rd.Ready || pings() != 0 {
		t.Fatalf("/ready before any check: %d %+v after %d pings; want 503 and none", code, rd, pings())
	}
	ctx := context.Background()
	s.check(ctx)
	for range 100 {
		if code, rd := ready(); code != http.StatusOK || !rd.Ready || rd.Redis != "ok" || rd.Postgres != "ok" {
			t.Fatalf("/ready after a good check: %d %+v", code, rd)
		}
	}
	if n := pings(); n != 2 {
		t.Fatalf("one check and 100 probes pinged %d times, want the check's 2", n)
	}

	b.down.Store(true)
	s.check(ctx)
	if code, rd := ready(); code != http.StatusServiceUnavailable || !strings.HasPrefix(rd.Reason, "redis unreachable") {
		t.Fatalf("/ready after a check that missed Redis: %d %+v", code, rd)
	}
	b.down.Store(false)
	s.check(ctx)
	s.draining.Store(true) // as Drain does, between two checks
	if code, rd := ready(); code != http.StatusServiceUnavailable || !rd.Draining || rd.Reason != "draining" {
		t.Fatalf("/ready once draining: %d %+v, want 503 draining at once", code, rd)
	}
	if n := pings(); n != 6 {
		t.Fatalf("3 checks and 103 probes pinged %d times, want the checks' 6", n)
	}
}

// net/http clears a connection's deadlines when the /ws handler hijacks it,
// so HTTPServer's timeouts bound plain requests and never a WebSocket
// session: one idle for three times every timeout still reads and writes.
// The timeouts are scaled down to 300 ms; the rest is HTTPServer's.
func TestHTTPServerTimeoutsSpareWebSocketSessions(t *testing.T) {
	s, _, _ := newUnitServer(t)
	s.check(context.Background()) // Redis up: /ws upgrades
	hs := HTTPServer(s.Handler())
	if hs.ReadHeaderTimeout <= 0 || hs.ReadTimeout <= 0 || hs.WriteTimeout <= 0 || hs.IdleTimeout <= 0 {
		t.Fatalf("HTTPServer sets no timeout to test: %+v", hs)
	}
	const d = 300 * time.Millisecond
	hs.ReadHeaderTimeout, hs.ReadTimeout, hs.WriteTimeout, hs.IdleTimeout = d, d, d, d
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })

	tok, err := auth.Mint([]byte(unitSecret), "idle", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	conn := chattest.Raw(t, "ws://"+ln.Addr().String()+"/ws", tok)
	for round := range 2 {
		time.Sleep(3 * d)
		if err := conn.WriteMessage(websocket.TextMessage, []byte(`{"op":"leave","room":"nowhere"}`)); err != nil {
			t.Fatalf("round %d: write after %s idle: %v", round, 3*d, err)
		}
		if f := chattest.Next(t, conn); f.Op != protocol.OpError || f.Code != protocol.CodeNotJoined {
			t.Fatalf("round %d: answer after %s idle: %+v, want not_joined", round, 3*d, f)
		}
	}

	// A plain request is still bounded: one whose header never ends is cut.
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	start := time.Now()
	raw.Write([]byte("GET /health HTTP/1.1\r\nHost: x\r\n"))
	raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	bufio.NewReader(raw).ReadString('\n') // a 408, or the close
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("a request header left unfinished was cut only after %s (ReadHeaderTimeout %s)", took, d)
	}
}

// The history API reads in the read slots that catch-ups use
// (CATCHUP_CONCURRENCY, 8 by default): with every slot taken it waits.
func TestHistoryReadsWaitForAReadSlot(t *testing.T) {
	s, _, _ := newUnitServer(t)
	var held []func()
	for range 8 {
		release, err := s.hub.ReadSlot(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, release)
	}
	tok, err := auth.Mint([]byte(unitSecret), "reader", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan int, 1)
	go func() {
		req := httptest.NewRequest("GET", "/rooms/lobby/messages", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		done <- rec.Code
	}()
	select {
	case code := <-done:
		t.Fatalf("a history read answered %d while every read slot was taken", code)
	case <-time.After(300 * time.Millisecond):
	}
	held[0]()
	select {
	case code := <-done:
		if code != http.StatusOK {
			t.Fatalf("history read once a slot was free: %d, want 200", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a history read still waited 5 s after a read slot was freed")
	}
	for _, release := range held[1:] {
		release()
	}
}
