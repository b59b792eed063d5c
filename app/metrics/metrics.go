// Package metrics declares every Prometheus series the chat server exports.
// The names are a contract: dashboards/ and the alert rules query them.
// Labels are bounded enums, never a user or a room.
package metrics

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/switchboard-dev/switchboard/app/protocol"
)

// Results of a client's send, for chat_messages_received_total.
const (
	ResultAccepted    = "accepted"
	ResultDuplicate   = "duplicate"
	ResultRejected    = "rejected" // bad_request or not_joined
	ResultRateLimited = "rate_limited"
	ResultError       = "error"      // Redis failed: not acked
	ResultOverloaded  = "overloaded" // the persist backlog is at its cap: not acked
)

// ClosedByClient is chat_connections_closed_total's code when the client
// closed (or the socket failed) before the server sent a close frame.
const ClosedByClient = "client"

// Operations for chat_redis_errors_total{op} and chat_postgres_errors_total{op}.
const (
	OpPublish        = "publish"
	OpSubscribe      = "subscribe"
	OpUnsubscribe    = "unsubscribe"
	OpLatest         = "latest"
	OpRepair         = "repair"
	OpHistory        = "history"
	OpPersistMigrate = "persist_migrate"
	OpPersistGroup   = "persist_create_group"
	OpPersistRead    = "persist_read"
	OpPersistInsert  = "persist_insert"
	OpPersistAck     = "persist_ack"
	// A room's seq reservation (a new room, or one Redis lost), which
	// refuses its sends while Postgres is down.
	OpReserve = "reserve"
	// Counting quotas in Redis (app/quota): while it fails, quotas are not
	// enforced.
	OpQuota = "quota"
)

// Reasons for chat_connections_refused_total{reason}.
const (
	RefusedDraining     = "draining"
	RefusedRedisDown    = "redis_down"
	RefusedUnauthorized = "unauthorized"
	RefusedOrigin       = "origin"
	RefusedHandshake    = "handshake"
	RefusedQuota        = "quota"    // a per-user or per-address quota (chat_quota_refused_total says which)
	RefusedCapacity     = "capacity" // MAX_CONNECTIONS sessions are open on this instance
)

// Directions for websocket_messages_total{direction}.
const (
	DirectionReceived = "received"
	DirectionSent     = "sent"
)

// latencyBuckets spans 0.5 ms to 10 s: loopback deliveries to a struggling instance.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Metrics is one server's set of series on its own registry.
type Metrics struct {
	Registry *prometheus.Registry

	ConnectionsActive prometheus.Gauge
	Messages          *prometheus.CounterVec // websocket_messages_total{direction}
	// FramesSent and FramesReceived are Messages' two series, looked up
	// once: every frame counts, and a label lookup hashes and locks.
	FramesSent, FramesReceived prometheus.Counter
	BroadcastLatency           prometheus.Histogram
	Received                   *prometheus.CounterVec // chat_messages_received_total{result}
	Delivered                  prometheus.Counter
	DeliveryLatency            prometheus.Histogram
	SlowConsumers              prometheus.Counter
	WritesDeferred             prometheus.Counter
	Refused                    *prometheus.CounterVec // chat_connections_refused_total{reason}
	Closed                     *prometheus.CounterVec // chat_connections_closed_total{code}
	RedisErrors                *prometheus.CounterVec // chat_redis_errors_total{op}
	PostgresErrors             *prometheus.CounterVec // chat_postgres_errors_total{op}
	Persisted                  prometheus.Counter
	PersistLag                 prometheus.Gauge
	PersistBacklog             prometheus.Gauge
	PersistBacklogCap          prometheus.Gauge
	PersistLost                prometheus.Counter
	PersistRejected            *prometheus.CounterVec // chat_persist_rejected_total{reason}
	HistoryGaps                prometheus.Counter
	RoomsActive                prometheus.Gauge
	Ready                      prometheus.Gauge
	Draining                   prometheus.Gauge
	DependencyUp               *prometheus.GaugeVec   // chat_dependency_up{dependency}
	RedisEvicting              prometheus.Gauge       // chat_redis_evicting
	QuotaRefused               *prometheus.CounterVec // chat_quota_refused_total{quota}
}

// New creates and registers every series, with the Go and process collectors.
func New() *Metrics {
	r := prometheus.NewRegistry()
	f := factory{r}
	m := &Metrics{
		Registry:          r,
		ConnectionsActive: f.gauge("websocket_connections_active", "Open WebSocket connections on this instance."),
		Messages:          f.counterVec("websocket_messages_total", "WebSocket messages: received from clients and sent to them.", "direction"),
		BroadcastLatency:  f.histogram("websocket_broadcast_latency_seconds", "Time from a message's acceptance to its being queued for every local member of its room."),
		Received:          f.counterVec("chat_messages_received_total", "Sends from clients, by result.", "result"),
		Delivered:         f.counter("chat_messages_delivered_total", "Message frames written to clients (live and resumed)."),
		DeliveryLatency:   f.histogram("chat_delivery_latency_seconds", "Time from a message's acceptance to its frame being written to a client socket."),
		SlowConsumers:     f.counter("chat_slow_consumers_total", "Connections closed because their send queue overflowed."),
		WritesDeferred:    f.counter("chat_writes_deferred_total", "Writes deferred by up to WRITE_COALESCE, so that the frames arriving meanwhile share one write: to a connection receiving a hot stream, or whose send awaits its answer (the ack and its own message)."),
		Refused:           f.counterVec("chat_connections_refused_total", "Connection attempts refused before the upgrade, by reason.", "reason"),
		Closed:            f.counterVec("chat_connections_closed_total", "Connections closed, by WebSocket close code.", "code"),
		RedisErrors:       f.counterVec("chat_redis_errors_total", "Failed Redis operations, by operation.", "op"),
		PostgresErrors:    f.counterVec("chat_postgres_errors_total", "Failed Postgres operations, by operation.", "op"),
		Persisted:         f.counter("chat_messages_persisted_total", "Messages this instance wrote to Postgres."),
		PersistLag:        f.gauge("chat_persist_lag_seconds", "Age of the oldest accepted message this instance has not yet written to Postgres; 0 when caught up."),
		PersistBacklog:    f.gauge("chat_persist_backlog_messages", "Messages queued in Redis and not yet written to Postgres (whole deployment)."),
		PersistBacklogCap: f.gauge("chat_persist_backlog_cap_messages", "PERSIST_BACKLOG_CAP: at this backlog new sends are refused with overloaded."),
		PersistLost:       f.counter("chat_persist_lost_total", "Queued messages found deleted from the persist stream before they were stored in Postgres; 0 unless something outside the writers trimmed it."),
		PersistRejected:   f.counterVec("chat_persist_rejected_total", "Messages the persist writer could not store as they came (kept in rejected_messages), by reason.", "reason"),
		HistoryGaps:       f.counter("chat_history_gaps_total", "Resumes that could not be filled from Redis or Postgres."),
		RoomsActive:       f.gauge("chat_rooms_active", "Rooms with at least one member on this instance."),
		Ready:             f.gauge("chat_ready", "1 while the instance reports ready, else 0."),
		Draining:          f.gauge("chat_draining", "1 once the instance has started draining."),
		DependencyUp:      f.gaugeVec("chat_dependency_up", "1 if the last readiness ping of the dependency succeeded.", "dependency"),
	}
	m.QuotaRefused = f.counterVec("chat_quota_refused_total", "Requests refused by a per-user or per-address quota, by quota (protocol.Quotas).", "quota")
	m.RedisEvicting = f.gauge("chat_redis_evicting", "1 if Redis's maxmemory-policy may evict keys (anything but noeviction): a full Redis would delete room keys, seqs and history; 0 under noeviction or before it is read.")
	// Every label value above is exported at 0 from the start, so that rate()
	// and the dashboards see a series before the first error happens.
	for vec, values := range map[*prometheus.CounterVec][]string{
		m.Received:       {ResultAccepted, ResultDuplicate, ResultRejected, ResultRateLimited, ResultError, ResultOverloaded},
		m.Closed:         closeCodes(),
		m.Messages:       {DirectionReceived, DirectionSent},
		m.Refused:        {RefusedDraining, RefusedRedisDown, RefusedUnauthorized, RefusedOrigin, RefusedHandshake, RefusedQuota, RefusedCapacity},
		m.QuotaRefused:   protocol.Quotas,
		m.RedisErrors:    {OpPublish, OpSubscribe, OpUnsubscribe, OpLatest, OpRepair, OpHistory, OpPersistGroup, OpPersistRead, OpPersistAck, OpQuota},
		m.PostgresErrors: {OpHistory, OpPersistMigrate, OpPersistInsert, OpReserve},
	} {
		for _, v := range values {
			vec.WithLabelValues(v)
		}
	}
	m.FramesSent = m.Messages.WithLabelValues(DirectionSent)
	m.FramesReceived = m.Messages.WithLabelValues(DirectionReceived)
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// closeCodes are chat_connections_closed_total's label values: every close
// code the server sends, and ClosedByClient.
func closeCodes() []string {
	out := []string{ClosedByClient}
	for _, c := range []int{protocol.CloseGoingAway, protocol.ClosePolicy, protocol.CloseTooLarge, protocol.CloseInternal, protocol.CloseTryAgainLate} {
		out = append(out, strconv.Itoa(c))
	}
	return out
}

// Handler serves the registry for /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

type factory struct{ r prometheus.Registerer }

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	f.r.MustRegister(g)
	return g
}

func (f factory) gaugeVec(name, help, label string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{label})
	f.r.MustRegister(g)
	return g
}

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	f.r.MustRegister(c)
	return c
}

func (f factory) counterVec(name, help, label string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{label})
	f.r.MustRegister(c)
	return c
}

func (f factory) histogram(name, help string) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: latencyBuckets})
	f.r.MustRegister(h)
	return h
}
