package dashboards

import (
	"strings"

	g "github.com/switchboard-dev/switchboard/dashboards/grafana"
)

// selector narrows every query to the dashboard's variables; a missing
// namespace label matches "All" (.*), so the local target needs none.
const selector = `namespace=~"$namespace", job=~"$job", instance=~"$instance"`

// q writes a query, expanding $sel to the variables' selector.
func q(expr, legend string) g.Query {
	return g.Query{Expr: strings.ReplaceAll(expr, "$sel", selector), Legend: legend}
}

// quantiles is p50, p95 and p99 of a histogram over the selected instances.
func quantiles(histogram string) []g.Query {
	var qs []g.Query
	for _, p := range []struct{ q, legend string }{{"0.5", "p50"}, {"0.95", "p95"}, {"0.99", "p99"}} {
		qs = append(qs, q(`histogram_quantile(`+p.q+`, sum by (le) (rate(`+histogram+`_bucket{$sel}[$__rate_interval])))`, p.legend))
	}
	return qs
}

// Switchboard is the Switchboard dashboard: the rows an on-call engineer
// reads top-down, from what users feel to what the runtime does.
func Switchboard() g.Dashboard {
	return g.Dashboard{
		UID:         "switchboard",
		Title:       "Switchboard",
		Description: "Switchboard chat service: traffic, latency, health, back-pressure, dependencies and runtime of the chat instances.",
		Tags:        []string{"switchboard", "websocket", "chat"},
		Variables: []g.Variable{
			{Name: "namespace", Label: "Namespace", Query: `label_values(websocket_connections_active, namespace)`, All: true},
			{Name: "job", Label: "Job", Query: `label_values(websocket_connections_active{namespace=~"$namespace"}, job)`, Default: "switchboard"},
			{Name: "instance", Label: "Instance", Query: `label_values(websocket_connections_active{namespace=~"$namespace", job=~"$job"}, instance)`, All: true},
		},
		Rows: []g.Row{
			{Title: "Traffic", Panels: []g.Panel{
				{Kind: g.TimeSeries, Title: "Connections per instance", Unit: "short",
					Description: "Open WebSocket connections on each instance. Sticky sessions keep clients where they landed, so instances added by a scale-out fill only as clients reconnect.",
					Queries:     []g.Query{q(`sum by (instance) (websocket_connections_active{$sel})`, "{{instance}}")}},
				{Kind: g.TimeSeries, Title: "Messages per second", Unit: "ops",
					Description: "Sends accepted from clients, and message frames written to clients (live and resumed). Delivered over accepted is the average number of recipients.",
					Queries: []g.Query{
						q(`sum(rate(chat_messages_received_total{$sel, result="accepted"}[$__rate_interval]))`, "accepted"),
						q(`sum(rate(chat_messages_delivered_total{$sel}[$__rate_interval]))`, "delivered"),
					}},
				{Kind: g.TimeSeries, Title: "Rooms", Unit: "short",
					Description: "Rooms with at least one member on each instance. A room with members on several instances counts on each of them.",
					Queries:     []g.Query{q(`sum by (instance) (chat_rooms_active{$sel})`, "{{instance}}")}},
				{Kind: g.TimeSeries, Title: "Sends by result", Unit: "ops",
					Description: "Client sends by result: accepted, duplicate (a retried id, acked again), rejected (bad request or not joined), rate_limited, error (Redis failed: not acked, the client retries).",
					Queries:     []g.Query{q(`sum by (result) (rate(chat_messages_received_total{$sel}[$__rate_interval]))`, "{{result}}")}},
				{Kind: g.TimeSeries, Title: "WebSocket frames per second", Unit: "ops",
					Description: "Every WebSocket data frame received from and sent to clients: sends, joins, acks, messages, errors.",
					Queries:     []g.Query{q(`sum by (direction) (rate(websocket_messages_total{$sel}[$__rate_interval]))`, "{{direction}}")}},
				{Kind: g.TimeSeries, Title: "Connections closed by code", Unit: "ops",
					Description: "Connections closed per second by WebSocket close code: client (the client closed), 1001 (drain), 1008 (policy, e.g. expired token), 1009 (frame too big), 1013 (slow consumer).",
					Queries:     []g.Query{q(`sum by (code) (rate(chat_connections_closed_total{$sel}[$__rate_interval]))`, "{{code}}")}},
			}},
			{Title: "Latency", Panels: []g.Panel{
				{Kind: g.TimeSeries, Title: "Delivery latency", Unit: "s",
					Description: "From a message's acceptance to its frame being written to a recipient's socket, across instances (through Redis when sender and recipient are on different instances).",
					Queries:     quantiles("chat_delivery_latency_seconds")},
				{Kind: g.TimeSeries, Title: "Broadcast latency", Unit: "s",
					Description: "From a message's acceptance to its being queued for every local member of its room on an instance. Alert SwitchboardBroadcastLatencyHigh fires on p99 above 0.5 s.",
					Queries:     quantiles("websocket_broadcast_latency_seconds")},
				{Kind: g.Heatmap, Title: "Delivery latency heatmap", Unit: "s",
					Description: "Deliveries per latency bucket over time; a second band appearing above the main one shows a part of the clients or one instance falling behind.",
					Queries:     []g.Query{q(`sum by (le) (increase(chat_delivery_latency_seconds_bucket{$sel}[$__rate_interval]))`, "{{le}}")}},
				{Kind: g.TimeSeries, Title: "Delivery p99 per instance", Unit: "s", Width: 24,
					Description: "Delivery latency p99 of each instance: one instance above the others points at that instance (CPU, GC), all of them at Redis or the network. Alert SwitchboardDeliveryLatencyHigh fires above 1 s.",
					Queries:     []g.Query{q(`histogram_quantile(0.99, sum by (le, instance) (rate(chat_delivery_latency_seconds_bucket{$sel}[$__rate_interval])))`, "{{instance}}")}},
			}},
			{Title: "Health", Panels: []g.Panel{
				{Kind: g.TimeSeries, Title: "Instances up and ready", Unit: "short",
					Description: "Instances Prometheus scrapes (up), and those reporting ready (receiving new connections). Ready below up means a dependency is down or an instance is draining.",
					Queries: []g.Query{
						q(`sum(up{$sel})`, "up"),
						q(`sum(chat_ready{$sel})`, "ready"),
					}},
				{Kind: g.TimeSeries, Title: "Draining", Unit: "short",
					Description: "1 while an instance drains after SIGTERM: it refuses new connections and closes its own with 1001, spread over DRAIN_TIMEOUT. Expected during a rollout.",
					Queries:     []g.Query{q(`max by (instance) (chat_draining{$sel})`, "{{instance}}")}},
				{Kind: g.Stat, Title: "Restarts in the last hour", Unit: "short",
					Description: "Times each instance's process started again under the same address in the last hour. On Kubernetes a replaced pod is a new instance: see kube_pod_container_status_restarts_total for container restarts.",
					Queries:     []g.Query{q(`sum by (instance) (changes(process_start_time_seconds{$sel}[1h]))`, "{{instance}}")}},
			}},
			{Title: "Back-pressure", Panels: []g.Panel{
				{Kind: g.TimeSeries, Title: "Slow consumers closed", Unit: "ops",
					Description: "Connections closed (1013) because their send queue (SEND_QUEUE messages) overflowed. The queue never drops a message silently: the client is closed, reconnects and resumes. Alert SwitchboardSlowConsumerSurge fires above 0.2/s.",
					Queries:     []g.Query{q(`sum by (instance) (rate(chat_slow_consumers_total{$sel}[$__rate_interval]))`, "{{instance}}")}},
				{Kind: g.TimeSeries, Title: "Rate-limited sends", Unit: "ops",
					Description: "Sends refused with the error frame rate_limited because a connection sent faster than its limit.",
					Queries:     []g.Query{q(`sum by (instance) (rate(chat_messages_received_total{$sel, result="rate_limited"}[$__rate_interval]))`, "{{instance}}")}},
				{Kind: g.TimeSeries, Title: "Connections refused", Unit: "ops",
					Description: "Upgrade requests refused before the WebSocket opened, by reason: unauthorized (401), origin (403), redis_down, draining and capacity (503, MAX_CONNECTIONS), quota (429, see Quota refusals), handshake (not a valid WebSocket request).",
					Queries:     []g.Query{q(`sum by (reason) (rate(chat_connections_refused_total{$sel}[$__rate_interval]))`, "{{reason}}")}},
				{Kind: g.TimeSeries, Title: "Quota refusals", Unit: "ops",
					Description: "Requests refused by a per-user or per-address quota, by quota (docs/abuse.md): one abuser shows as one quota rising; every quota rising at once after a release means the limits are too tight for real traffic.",
					Queries:     []g.Query{q(`sum by (quota) (rate(chat_quota_refused_total{$sel}[$__rate_interval]))`, "{{quota}}")}},
			}},
			{Title: "Dependencies", Panels: []g.Panel{
				{Kind: g.TimeSeries, Title: "Dependency up", Unit: "short",
					Description: "Result of each instance's last readiness ping, lowest over the instances: 1 up, 0 down. Redis down makes an instance unready; Postgres down does not.",
					Queries:     []g.Query{q(`min by (dependency) (chat_dependency_up{$sel})`, "{{dependency}}")}},
				{Kind: g.TimeSeries, Title: "Redis errors by operation", Unit: "ops",
					Description: "Failed Redis operations per second: publish, subscribe and latest carry live chat; history serves resumes; persist_* move messages to Postgres. Alert SwitchboardRedisErrors fires above 0.1/s.",
					Queries:     []g.Query{q(`sum by (op) (rate(chat_redis_errors_total{$sel}[$__rate_interval]))`, "{{op}}")}},
				{Kind: g.TimeSeries, Title: "Postgres errors by operation", Unit: "ops",
					Description: "Failed Postgres operations per second: history reads, persist_insert writes, persist_migrate at start. Alert SwitchboardPostgresErrors fires above 0.1/s.",
					Queries:     []g.Query{q(`sum by (op) (rate(chat_postgres_errors_total{$sel}[$__rate_interval]))`, "{{op}}")}},
				{Kind: g.TimeSeries, Title: "Persistence lag", Unit: "s",
					Description: "Age of the oldest accepted message each instance has not yet written to Postgres; 0 when caught up. Alert SwitchboardPersistenceLagging fires above 30 s.",
					Queries:     []g.Query{q(`max by (instance) (chat_persist_lag_seconds{$sel})`, "{{instance}}")}},
				{Kind: g.TimeSeries, Title: "Persist backlog", Unit: "short",
					Description: "Messages in the Redis persist stream not yet written to Postgres, for the whole deployment (every instance reports the same figure).",
					Queries:     []g.Query{q(`max(chat_persist_backlog_messages{$sel})`, "backlog")}},
				{Kind: g.TimeSeries, Title: "Messages persisted and history gaps", Unit: "ops",
					Description: "Messages written to Postgres per second, and resumes that could be filled neither from Redis nor from Postgres (gaps: should stay 0).",
					Queries: []g.Query{
						q(`sum(rate(chat_messages_persisted_total{$sel}[$__rate_interval]))`, "persisted"),
						q(`sum(rate(chat_history_gaps_total{$sel}[$__rate_interval]))`, "gaps"),
					}},
			}},
			{Title: "Runtime", Panels: []g.Panel{
				{Kind: g.TimeSeries, Title: "CPU", Unit: "percentunit",
					Description: "CPU time used per second by each instance (1 = one core). Compare with the pod's CPU limit: at the limit, latency rises.",
					Queries:     []g.Query{q(`sum by (instance) (rate(process_cpu_seconds_total{$sel}[$__rate_interval]))`, "{{instance}}")}},
				{Kind: g.TimeSeries, Title: "Heap and RSS", Unit: "bytes",
					Description: "Go heap in use and resident memory of each instance. RSS grows with connections (buffers per connection); compare with the memory limit.",
					Queries: []g.Query{
						q(`sum by (instance) (go_memstats_heap_inuse_bytes{$sel})`, "heap {{instance}}"),
						q(`sum by (instance) (process_resident_memory_bytes{$sel})`, "rss {{instance}}"),
					}},
				{Kind: g.TimeSeries, Title: "Goroutines", Unit: "short",
					Description: "Goroutines per instance: about two per connection plus a fixed set; growth without connections is a leak.",
					Queries:     []g.Query{q(`sum by (instance) (go_goroutines{$sel})`, "{{instance}}")}},
				{Kind: g.TimeSeries, Title: "GC pause", Unit: "s",
					Description: "Mean stop-the-world GC pause per instance over the interval. Long pauses delay every delivery on the instance.",
					Queries:     []g.Query{q(`sum by (instance) (rate(go_gc_duration_seconds_sum{$sel}[$__rate_interval])) / sum by (instance) (rate(go_gc_duration_seconds_count{$sel}[$__rate_interval]))`, "{{instance}}")}},
				{Kind: g.TimeSeries, Title: "Open file descriptors", Unit: "short",
					Description: "Open file descriptors per instance (one per connection, plus Redis and Postgres pools), against the process limit.",
					Queries: []g.Query{
						q(`sum by (instance) (process_open_fds{$sel})`, "open {{instance}}"),
						q(`min(process_max_fds{$sel})`, "limit"),
					}},
			}},
		},
	}
}
