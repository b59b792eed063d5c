package server

import (
	"context"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/switchboard-dev/switchboard/app/config"
	"github.com/switchboard-dev/switchboard/app/metrics"
	"github.com/switchboard-dev/switchboard/app/protocol"
	"github.com/switchboard-dev/switchboard/app/quota"
)

// Quotas counts what each user and each client address may do, across
// instances (app/quota). A server without one enforces no quota.
type Quotas interface {
	Allow(name, key string, r quota.Rate, now time.Time) (ok bool, retryAfter time.Duration)
	Open(ctx context.Context, user, addr string, maxUser, maxAddr int) (release func(), refused string, err error)
}

// Option configures a Server.
type Option func(*Server)

// WithQuotas has the server enforce the QUOTA_* and MAX_CONNECTIONS_PER_*
// settings through q.
func WithQuotas(q Quotas) Option { return func(s *Server) { s.quotas = q } }

// connectionsRetryAfter is the Retry-After of a refusal for too many open
// connections: one of them must close first.
const connectionsRetryAfter = 10 * time.Second

// allow counts one event of quota name for key; a refusal is counted in
// chat_quota_refused_total and comes with when to retry.
func (s *Server) allow(name, key string, r config.Rate) (bool, time.Duration) {
	if s.quotas == nil || r.Off() {
		return true, 0
	}
	ok, retry := s.quotas.Allow(name, key, quota.Rate{Count: r.Count, Per: r.Per}, time.Now())
	if !ok {
		s.m.QuotaRefused.WithLabelValues(name).Inc()
	}
	return ok, retry
}

// quotaError is the rate_limited refusal of quota name.
func quotaError(name string, r config.Rate, retry time.Duration) *protocol.Error {
	return &protocol.Error{
		Code: protocol.CodeRateLimited, Quota: name, RetryAfterMS: max(1, retry.Milliseconds()),
		Message: name + ": " + r.String() + "; retry later",
	}
}

// tooMany answers an upgrade or history request a quota refuses with 429.
func (s *Server) tooMany(w http.ResponseWriter, name, msg string, retry time.Duration) {
	s.m.Refused.WithLabelValues(metrics.RefusedQuota).Inc()
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(max(retry, time.Second).Seconds()))))
	writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": msg, "quota": name})
}

// openConnection counts a connection of user from addr against
// MAX_CONNECTIONS_PER_USER and _PER_ADDRESS across instances, answering a
// refusal with 429. While Redis cannot count, the connection is let in
// (and counted in chat_redis_errors_total{op="quota"}): the quotas guard
// the service, and refusing everyone would be the outage they prevent.
func (s *Server) openConnection(ctx context.Context, w http.ResponseWriter, user string, addr netip.Addr) (release func(), ok bool) {
	none := func() {}
	maxUser, maxAddr := s.cfg.MaxConnectionsPerUser, s.cfg.MaxConnectionsPerAddress
	if s.quotas == nil || (maxUser == 0 && maxAddr == 0) {
		return none, true
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	release, refused, err := s.quotas.Open(ctx, user, addr.String(), maxUser, maxAddr)
	switch {
	case err != nil:
		s.m.RedisErrors.WithLabelValues(metrics.OpQuota).Inc()
		s.log.Warn("connection quotas not counted: letting the connection in", "err", err)
		return none, true
	case refused == protocol.QuotaUserConnections:
		s.m.QuotaRefused.WithLabelValues(refused).Inc()
		s.tooMany(w, refused, "too many open connections for user "+user+" (MAX_CONNECTIONS_PER_USER "+strconv.Itoa(maxUser)+")", connectionsRetryAfter)
		return nil, false
	case refused != "":
		s.m.QuotaRefused.WithLabelValues(refused).Inc()
		s.tooMany(w, refused, "too many open connections from your address (MAX_CONNECTIONS_PER_ADDRESS "+strconv.Itoa(maxAddr)+")", connectionsRetryAfter)
		return nil, false
	}
	return release, true
}
