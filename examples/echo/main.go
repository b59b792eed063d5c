// Command echo is the smallest WebSocket server the blueprint deploys: it
// sends every message back. It keeps the blueprint's contract with a
// server (docs/component.md): it listens on LISTEN_ADDR, answers /health
// and /ready, exports websocket_connections_active on /metrics, and on
// SIGTERM turns unready, waits DRAIN_DELAY and closes its connections.
package main

import (
	"cmp"
	"context"
	"errors"
	"log"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func main() {
	drainDelay, err := duration("DRAIN_DELAY", 5*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	s := newServer(strings.Split(os.Getenv("ALLOWED_ORIGINS"), ","))
	srv := &http.Server{Addr: cmp.Or(os.Getenv("LISTEN_ADDR"), ":8080"), Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			log.Fatalf("echo: %v", err)
		}
	}()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	<-ctx.Done()
	// Unready first: the load balancers stop sending new clients, then the
	// open connections close and their clients reconnect elsewhere.
	s.draining.Store(true)
	time.Sleep(drainDelay)
	s.closeAll()
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		log.Printf("echo: shutdown: %v", err)
	}
}

func duration(env string, def time.Duration) (time.Duration, error) {
	v := os.Getenv(env)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, errors.New(env + ": " + err.Error())
	}
	return d, nil
}

// server echoes on /ws and counts its open connections.
type server struct {
	upgrader websocket.Upgrader
	open     prometheus.Gauge
	registry *prometheus.Registry
	draining atomic.Bool

	mu    sync.Mutex
	conns map[*websocket.Conn]struct{}
}

// newServer accepts the origins listed (empty entries ignored); with none,
// only same-origin browsers and clients that send no Origin.
func newServer(origins []string) *server {
	s := &server{
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			// The blueprint's default scaling signal (blueprint.ConnectionsMetric).
			Name: "websocket_connections_active", Help: "Open WebSocket connections.",
		}),
		registry: prometheus.NewRegistry(),
		conns:    map[*websocket.Conn]struct{}{},
	}
	s.registry.MustRegister(s.open)
	allowed := slices.DeleteFunc(origins, func(o string) bool { return strings.TrimSpace(o) == "" })
	if len(allowed) > 0 {
		s.upgrader.CheckOrigin = func(r *http.Request) bool {
			o := r.Header.Get("Origin")
			return o == "" || slices.Contains(allowed, o)
		}
	}
	return s
}

func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if s.draining.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /ws", s.echo)
	return mux
}

func (s *server) echo(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		// A proxy passes a refused handshake on to another pod.
		http.Error(w, "draining", http.StatusServiceUnavailable)
		return
	}
	c, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered
	}
	s.track(c, true)
	defer s.track(c, false)
	for {
		kind, msg, err := c.ReadMessage()
		if err != nil {
			return
		}
		if err := c.WriteMessage(kind, msg); err != nil {
			return
		}
	}
}

func (s *server) track(c *websocket.Conn, open bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if open {
		s.conns[c] = struct{}{}
		s.open.Inc()
		return
	}
	if _, ok := s.conns[c]; ok {
		delete(s.conns, c)
		s.open.Dec()
	}
	c.Close()
}

// closeAll says goodbye (1001, going away) to every client.
func (s *server) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	bye := websocket.FormatCloseMessage(websocket.CloseGoingAway, "draining")
	for c := range s.conns {
		_ = c.WriteControl(websocket.CloseMessage, bye, time.Now().Add(time.Second))
		c.Close()
	}
}
