// Package server is the chat server's HTTP face: the /ws upgrade with its
// refusals, the sessions, /health, /ready, /metrics, the history endpoint and
// the graceful drain.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-dev/switchboard/app/auth"
	"github.com/switchboard-dev/switchboard/app/broker"
	"github.com/switchboard-dev/switchboard/app/config"
	"github.com/switchboard-dev/switchboard/app/hub"
	"github.com/switchboard-dev/switchboard/app/metrics"
	"github.com/switchboard-dev/switchboard/app/netpoll"
	"github.com/switchboard-dev/switchboard/app/protocol"
	"github.com/switchboard-dev/switchboard/app/wsconn"
)

// Broker accepts messages (Redis).
type Broker interface {
	Publish(ctx context.Context, room, user, text, id string, now time.Time) (broker.Accepted, error)
	Ping(ctx context.Context) error
}

// Archive answers history queries (Postgres).
type Archive interface {
	Ping(ctx context.Context) error
	Before(ctx context.Context, room string, before int64, limit int) ([]protocol.Message, error)
}

// Server serves one chat instance.
type Server struct {
	cfg      config.Config
	hub      *hub.Hub
	broker   Broker
	archive  Archive
	verifier *auth.Verifier
	origins  auth.Origins
	quotas   Quotas // nil: none enforced
	m        *metrics.Metrics
	log      *slog.Logger
	upgrader websocket.Upgrader
	workers  *workers        // the sessions' reads and writes
	flushers *flushers       // the sessions' writes that need not wait
	poller   *netpoll.Poller // reports the sessions' client frames
	trim     *trimmer        // returns a burst of handshakes' garbage to the OS
	stop     chan struct{}   // ends the sessions' ticker (ticks.go)
	stopOnce sync.Once
	// sendDeadline bounds a send's wait for the broker: 3 s, up to a
	// tenth of a second more.
	sendDeadline sharedDeadline

	draining atomic.Bool // unready: the load balancer should stop sending new clients
	refusing atomic.Bool // closing connections: /ws answers 503
	redisUp  atomic.Bool // the last dependency check reached Redis
	// ready is the last dependency check's answer, which /ready gives
	// (with draining as it is now): a probe costs no ping.
	ready atomic.Pointer[readiness]
	// conns counts the sessions, from the reservation of a slot before the
	// upgrade until the session ends: at most MAX_CONNECTIONS.
	conns atomic.Int64

	mu       sync.Mutex
	sessions map[*session]struct{}
	live     sync.WaitGroup
}

// New wires a server; call WatchDependencies before serving, and Close
// after the drain.
func New(cfg config.Config, h *hub.Hub, b Broker, a Archive, m *metrics.Metrics, log *slog.Logger, opts ...Option) (*Server, error) {
	poller, err := netpoll.New()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, hub: h, broker: b, archive: a, m: m, log: log,
		verifier:     auth.NewVerifier(cfg.JWTSecret, auth.RequireIssuer(cfg.JWTIssuer), auth.RequireAudience(cfg.JWTAudience), auth.MaxTTL(cfg.JWTMaxTTL)),
		origins:      auth.NewOrigins(cfg.AllowedOrigins),
		sessions:     map[*session]struct{}{},
		sendDeadline: sharedDeadline{d: 3 * time.Second, step: 100 * time.Millisecond},
		workers:      newWorkers(),
		poller:       poller,
		trim:         newTrimmer(),
		stop:         make(chan struct{}),
	}
	if s.flushers, err = newFlushers(s.workers, cfg.WriteCoalesce); err != nil {
		poller.Close()
		return nil, err
	}
	s.upgrader = websocket.Upgrader{
		WriteBufferSize: 1024,
		// ReadBufferSize stays 0: the read buffer is wsconn's, which gorilla adopts.
		// Write buffers return to the pool between writes: an idle connection holds none.
		WriteBufferPool:  &sync.Pool{},
		HandshakeTimeout: 5 * time.Second,
		CheckOrigin:      func(*http.Request) bool { return true }, // checked before the upgrade, with a 403
		Subprotocols:     []string{auth.Subprotocol},               // selected when offered; the bearer.<jwt> entry is never echoed
	}
	for _, o := range opts {
		o(s)
	}
	go s.ticks(s.stop)
	return s, nil
}

// Close stops reading the sessions' sockets and their ticks; call it once
// they have ended.
func (s *Server) Close() error {
	s.stopOnce.Do(func() {
		close(s.stop)
		s.flushers.close()
	})
	return s.poller.Close()
}

// Handler routes every endpoint.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", s.serveWS)
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "instance": s.cfg.InstanceID})
	})
	mux.HandleFunc("GET /ready", s.serveReady)
	mux.Handle("GET /metrics", s.m.Handler())
	mux.HandleFunc("GET /rooms/{room}/messages", s.serveHistory)
	mux.Handle("GET /", pageHandler())
	return mux
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	refuse := func(status int, reason, msg string) {
		s.m.Refused.WithLabelValues(reason).Inc()
		writeJSON(w, status, map[string]string{"error": msg})
	}
	if s.refusing.Load() {
		refuse(http.StatusServiceUnavailable, metrics.RefusedDraining, "instance is draining; reconnect")
		return
	}
	if !s.redisUp.Load() {
		refuse(http.StatusServiceUnavailable, metrics.RefusedRedisDown, "message bus unavailable; retry later")
		return
	}
	if !s.reserve() {
		w.Header().Set("Retry-After", strconv.Itoa(int(capacityRetryAfter/time.Second)))
		refuse(http.StatusServiceUnavailable, metrics.RefusedCapacity, "instance at capacity (MAX_CONNECTIONS); retry later")
		return
	}
	// The slot is the session's once it exists (forget gives it back);
	// every refusal before then gives it back here.
	var sess *session
	defer func() {
		if sess == nil {
			s.conns.Add(-1)
		}
	}()
	// Counted before the token is checked: a storm of reconnects is one
	// whatever its tokens.
	addr := clientAddress(r, s.cfg.TrustedProxies)
	if ok, retry := s.allow(protocol.QuotaAddressConnects, addr.String(), s.cfg.Quotas.AddressConnects); !ok {
		s.tooMany(w, protocol.QuotaAddressConnects, "too many connection attempts from your address (QUOTA_ADDRESS_CONNECTS "+s.cfg.Quotas.AddressConnects.String()+")", retry)
		return
	}
	claims, err := s.verifier.FromRequest(r)
	if err == nil && !time.Now().Before(claims.Expires) {
		// Within the verifier's leeway for clock skew, but a session would
		// be closed with 1008 at once: refuse it here.
		err = errors.New("token expired")
	}
	if err != nil {
		refuse(http.StatusUnauthorized, metrics.RefusedUnauthorized, err.Error())
		return
	}
	if !s.origins.Allowed(r.Header.Get("Origin"), r.Host) {
		refuse(http.StatusForbidden, metrics.RefusedOrigin, "origin "+r.Header.Get("Origin")+" is not allowed")
		return
	}
	release, ok := s.openConnection(r.Context(), w, claims.User, addr)
	if !ok {
		return
	}
	defer func() {
		if sess == nil {
			release()
		}
	}()
	conn, err := s.upgrade(w, r)
	if err != nil {
		s.m.Refused.WithLabelValues(metrics.RefusedHandshake).Inc()
		return // the upgrader has answered with the reason
	}
	sess = newSession(s, conn, claims)
	sess.release = release
	s.trim.connected()
	sess.send(protocol.Welcome(s.cfg.InstanceID, claims.User))
	if !s.track(sess) {
		sess.close(protocol.CloseGoingAway, "server going away")
	}
	// This handler returns at once: net/http then frees the connection's
	// 4 KiB read and write buffers and its deep handler stack, which an idle
	// WebSocket would otherwise hold for hours (measured: 34.6 KiB RSS per
	// connection).
	sess.start()
}

// capacityRetryAfter is the Retry-After of a refusal at MAX_CONNECTIONS.
const capacityRetryAfter = 5 * time.Second

// reserve takes a session slot unless MAX_CONNECTIONS are taken; it never
// lets the count past the cap, however many upgrades race for the last slot.
func (s *Server) reserve() bool {
	limit := int64(s.cfg.MaxConnections)
	for {
		n := s.conns.Load()
		if limit > 0 && n >= limit {
			return false
		}
		if s.conns.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// upgrade completes the WebSocket handshake.
func (s *Server) upgrade(w http.ResponseWriter, r *http.Request) (*wsconn.Conn, error) {
	return wsconn.Upgrade(&s.upgrader, w, r, nil)
}

// track registers a session unless the drain has begun closing them.
func (s *Server) track(sess *session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sessions[sess] = struct{}{}
	s.live.Add(1)
	return !s.refusing.Load()
}

func (s *Server) forget(sess *session) {
	s.mu.Lock()
	delete(s.sessions, sess)
	s.mu.Unlock()
	s.conns.Add(-1)
	s.live.Done()
}

// readiness is /ready's answer.
type readiness struct {
	Ready    bool   `json:"ready"`
	Instance string `json:"instance"`
	Reason   string `json:"reason,omitempty"`
	Redis    string `json:"redis"`
	Postgres string `json:"postgres"`
	Draining bool   `json:"draining"`
}

// check pings Redis and Postgres with a short timeout each and records the
// result. A Postgres outage is reported but does not make the instance
// unready: live chat goes on without it.
func (s *Server) check(ctx context.Context) readiness {
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	var redisErr, pgErr error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); redisErr = s.broker.Ping(ctx) }()
	go func() { defer wg.Done(); pgErr = s.archive.Ping(ctx) }()
	wg.Wait()
	rd := readiness{Instance: s.cfg.InstanceID, Redis: status(redisErr), Postgres: status(pgErr), Draining: s.draining.Load()}
	s.redisUp.Store(redisErr == nil)
	s.m.DependencyUp.WithLabelValues("redis").Set(up(redisErr))
	s.m.DependencyUp.WithLabelValues("postgres").Set(up(pgErr))
	switch {
	case rd.Draining:
		rd.Reason = "draining"
	case redisErr != nil:
		rd.Reason = "redis unreachable: " + redisErr.Error()
	case s.poller.Err() != nil:
		// No client frame would be read again: let the load balancer move
		// the clients elsewhere.
		rd.Reason = "sockets no longer watched: " + s.poller.Err().Error()
	default:
		rd.Ready = true
	}
	if rd.Ready {
		s.m.Ready.Set(1)
	} else {
		s.m.Ready.Set(0)
	}
	s.ready.Store(&rd)
	return rd
}

// WatchDependencies re-checks every second until ctx ends, so /ws can refuse
// quickly while Redis is down and the gauges stay current between scrapes.
func (s *Server) WatchDependencies(ctx context.Context) {
	s.check(ctx)
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.check(ctx)
			}
		}
	}()
}

// serveReady answers from the last dependency check (WatchDependencies runs
// one a second), with draining as it is now: probes, however many, ping
// neither Redis nor Postgres.
func (s *Server) serveReady(w http.ResponseWriter, _ *http.Request) {
	rd := readiness{Instance: s.cfg.InstanceID, Reason: "dependencies not checked yet", Redis: "unknown", Postgres: "unknown"}
	if last := s.ready.Load(); last != nil {
		rd = *last
	}
	if s.draining.Load() {
		rd.Ready, rd.Draining, rd.Reason = false, true, "draining"
	}
	code := http.StatusOK
	if !rd.Ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, rd)
}

func (s *Server) serveHistory(w http.ResponseWriter, r *http.Request) {
	claims, err := s.verifier.FromRequest(r)
	if err != nil {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": err.Error()})
		return
	}
	if ok, retry := s.allow(protocol.QuotaUserHistory, claims.User, s.cfg.Quotas.UserHistory); !ok {
		s.tooMany(w, protocol.QuotaUserHistory, "too many history requests (QUOTA_USER_HISTORY "+s.cfg.Quotas.UserHistory.String()+")", retry)
		return
	}
	room := r.PathValue("room")
	if protocol.ValidRoom(room) && !claims.MayJoin(room) {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "your token does not open room " + room + " (its rooms claim)"})
		return
	}
	before, limit := int64(math.MaxInt64), 50
	var bad []string
	if !protocol.ValidRoom(room) {
		bad = append(bad, "room: want 1 to 64 of [A-Za-z0-9_.-]")
	}
	if v := r.URL.Query().Get("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			bad = append(bad, "before: want a seq of at least 1")
		}
		before = n
	}
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			bad = append(bad, "limit: want 1 to 500")
		}
		limit = n
	}
	if len(bad) > 0 {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "bad query", "details": bad})
		return
	}
	// History reads share the resumes' CATCHUP_CONCURRENCY slots.
	wait, cancel := context.WithTimeout(r.Context(), historySlotWait)
	release, err := s.hub.ReadSlot(wait)
	cancel()
	if err != nil {
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "history reads busy; retry later"})
		return
	}
	msgs, err := s.archive.Before(r.Context(), room, before, limit)
	release()
	if err != nil {
		s.m.PostgresErrors.WithLabelValues(metrics.OpHistory).Inc()
		s.log.Warn("history query failed", "room", room, "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "history store unavailable; retry later"})
		return
	}
	frames := make([]json.RawMessage, len(msgs))
	for i, m := range msgs {
		frames[i] = m.Frame()
	}
	writeJSON(w, http.StatusOK, map[string]any{"room": room, "messages": frames})
}

// historySlotWait is how long a history request waits for a read slot.
const historySlotWait = 5 * time.Second

// HTTPServer is the instance's HTTP server for handler. Its timeouts bound
// plain requests only: net/http clears a connection's deadlines when the
// /ws handler hijacks it (and gorilla clears the handshake's), so a
// WebSocket session is bounded by its own deadlines (writes: writeTimeout;
// a frame begun: FRAME_TIMEOUT) and its pings, never by these
// (TestHTTPServerTimeoutsSpareWebSocketSessions).
func HTTPServer(handler http.Handler) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
}

// Drain runs the shutdown sequence: unready at once, keep serving for delay
// while the load balancer deregisters the instance, then close every
// connection with 1001, spread over timeout so the clients' reconnects do
// not land on the survivors at once. It returns when every session has ended
// or ctx ends.
func (s *Server) Drain(ctx context.Context, delay, timeout time.Duration) {
	s.draining.Store(true)
	s.m.Draining.Set(1)
	s.m.Ready.Set(0)
	s.log.Info("draining: unready", "delay", delay, "timeout", timeout)
	if !sleep(ctx, delay) {
		return
	}
	s.mu.Lock()
	s.refusing.Store(true)
	sessions := make([]*session, 0, len(s.sessions))
	for sess := range s.sessions {
		sessions = append(sessions, sess)
	}
	s.mu.Unlock()
	s.log.Info("draining: closing connections", "connections", len(sessions))
	start := time.Now()
	for i, sess := range sessions {
		if !sleep(ctx, time.Until(start.Add(timeout*time.Duration(i)/time.Duration(len(sessions))))) {
			return
		}
		sess.close(protocol.CloseGoingAway, "server going away")
	}
	done := make(chan struct{})
	go func() { s.live.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	s.log.Info("draining: connections closed", "took", time.Since(start).Round(time.Millisecond))
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func status(err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	return "ok"
}

func up(err error) float64 {
	if err != nil {
		return 0
	}
	return 1
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) // a failed write means the client left
}
