// Package config reads the chat server's settings from the environment and
// validates all of them at once, so a bad deployment fails at start with one
// line per bad value.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config is every setting of the chat server, with its environment name.
type Config struct {
	ListenAddr      string        // LISTEN_ADDR
	RedisURL        string        // REDIS_URL
	DatabaseURL     string        // DATABASE_URL
	DatabaseAuth    string        // DATABASE_AUTH: password or rds-iam (database.go)
	JWTSecret       []byte        // JWT_SECRET
	AllowedOrigins  []string      // ALLOWED_ORIGINS
	LogLevel        string        // LOG_LEVEL
	DrainDelay      time.Duration // DRAIN_DELAY
	DrainTimeout    time.Duration // DRAIN_TIMEOUT
	MaxMessageBytes int           // MAX_MESSAGE_BYTES
	SendQueue       int           // SEND_QUEUE
	// WriteCoalesce is the longest a frame to a connection receiving a hot
	// stream waits to share a write with the next ones; 0: never.
	WriteCoalesce time.Duration // WRITE_COALESCE
	// PublishCoalesce is the longest a send arriving in a stream of sends
	// (more than one in that time) waits to share a run of the publish
	// script with the next ones; 0: never.
	PublishCoalesce time.Duration // PUBLISH_COALESCE
	InstanceID      string        // INSTANCE_ID
	HistorySize     int           // HISTORY_SIZE
	RecoveryLimit   int           // RECOVERY_LIMIT: most missed messages a resume delivers
	RateLimit       float64       // RATE_LIMIT
	RateBurst       int           // RATE_BURST
	PingInterval    time.Duration // PING_INTERVAL
	// RedisPartitions is how many partitions a Redis Cluster's rooms are
	// spread over (each a hash slot); unused by the other forms.
	RedisPartitions int // REDIS_PARTITIONS
	// RedisMinReplicas > 0 acks a send only once that many replicas have it.
	RedisMinReplicas int // REDIS_MIN_REPLICAS
	// PersistBacklogCap is how many accepted messages may wait for Postgres
	// before sends are refused with overloaded.
	PersistBacklogCap int // PERSIST_BACKLOG_CAP
	// DebugAddr serves Go's pprof profiles on a listener of its own, never
	// the public one; empty (the default) serves none.
	DebugAddr string // DEBUG_ADDR

	// Tokens (docs/abuse.md). JWTIssuer and JWTAudience are checked when set.
	JWTIssuer      string        // JWT_ISSUER
	JWTAudience    string        // JWT_AUDIENCE
	JWTMaxTTL      time.Duration // JWT_MAX_TTL: the longest lifetime (exp - iat) a token may have
	AllowDevSecret bool          // ALLOW_DEV_SECRET: accept the repository's development secret (local and kind only)

	// Limits on what one client can take (docs/abuse.md). A Rate of zero,
	// or a count of 0, turns that limit off.
	MaxConnections           int            // MAX_CONNECTIONS: sessions on this instance; past it the upgrade gets 503
	MaxConnectionsPerUser    int            // MAX_CONNECTIONS_PER_USER: across instances
	MaxConnectionsPerAddress int            // MAX_CONNECTIONS_PER_ADDRESS: across instances
	Quotas                   Quotas         // QUOTA_*
	TrustedProxies           []netip.Prefix // TRUSTED_PROXIES: peers whose X-Forwarded-For names the client
	CatchupConcurrency       int            // CATCHUP_CONCURRENCY: resume pages and history reads at once, per instance
	FrameTimeout             time.Duration  // FRAME_TIMEOUT: how long a frame, once begun, may take to arrive whole
}

// Quotas are the rate limits per user and per address, counted across
// instances in Redis.
type Quotas struct {
	UserSends       Rate // QUOTA_USER_SENDS: messages sent
	UserJoins       Rate // QUOTA_USER_JOINS: joins, resumes included
	UserRooms       Rate // QUOTA_USER_ROOMS: joins of rooms that have no message yet (rooms created)
	UserResumes     Rate // QUOTA_USER_RESUMES: resumes from past the Redis history window (read from Postgres)
	UserHistory     Rate // QUOTA_USER_HISTORY: history API calls
	AddressConnects Rate // QUOTA_ADDRESS_CONNECTS: upgrade attempts per client address
}

// Rate is Count events per Per; the zero Rate is no limit.
type Rate struct {
	Count int
	Per   time.Duration
}

// Off reports whether the rate sets no limit.
func (r Rate) Off() bool { return r.Count == 0 }

func (r Rate) String() string {
	if r.Off() {
		return "0"
	}
	return strconv.Itoa(r.Count) + "/" + r.Per.String()
}

// DevSecret is the JWT secret of the local target and the kind stack: a
// server refuses it unless ALLOW_DEV_SECRET=true.
const DevSecret = "switchboard-development-secret-not-for-production"

// weakSecrets are secrets found in examples and tutorials, refused always.
var weakSecrets = []string{"secret", "changeme", "change-me", "dev-secret", "your-256-bit-secret", "supersecret"}

// Defaults are the values used for every unset variable.
func Defaults() Config {
	host, _ := os.Hostname()
	return Config{
		ListenAddr:      ":8080",
		RedisURL:        "redis://127.0.0.1:6379/0",
		DatabaseURL:     "postgres://switchboard@127.0.0.1:5432/switchboard?sslmode=disable",
		DatabaseAuth:    AuthPassword,
		LogLevel:        "info",
		DrainDelay:      5 * time.Second,
		DrainTimeout:    10 * time.Second,
		MaxMessageBytes: 4096,
		SendQueue:       256,
		WriteCoalesce:   24 * time.Millisecond,
		PublishCoalesce: time.Millisecond,
		InstanceID:      host,
		HistorySize:     1000,
		RecoveryLimit:   10_000,
		RateLimit:       20,
		RateBurst:       40,
		PingInterval:    25 * time.Second,

		PersistBacklogCap: 100_000,
		RedisPartitions:   128,

		JWTMaxTTL:                24 * time.Hour,
		MaxConnections:           50_000,
		MaxConnectionsPerUser:    50,
		MaxConnectionsPerAddress: 2_000,
		Quotas: Quotas{
			UserSends:       Rate{1200, time.Minute},
			UserJoins:       Rate{600, time.Minute},
			UserRooms:       Rate{100, time.Minute},
			UserResumes:     Rate{120, time.Minute},
			UserHistory:     Rate{120, time.Minute},
			AddressConnects: Rate{1200, time.Minute},
		},
		CatchupConcurrency: 8,
		FrameTimeout:       10 * time.Second,
	}
}

// Load reads the settings through getenv (os.Getenv in production).
func Load(getenv func(string) string) (Config, error) {
	c := Defaults()
	r := reader{getenv: getenv}
	r.str("LISTEN_ADDR", &c.ListenAddr, "host:port, e.g. :8080", func(v string) bool {
		_, _, err := net.SplitHostPort(v)
		return err == nil
	})
	switch v := getenv("REDIS_URL"); {
	case strings.HasPrefix(v, SentinelScheme+"://"):
		if _, err := ParseRedisSentinel(v); err != nil {
			r.errs = append(r.errs, err)
		} else {
			c.RedisURL = v
		}
	case IsCluster(v):
		if _, err := ParseRedisCluster(v); err != nil {
			r.errs = append(r.errs, err)
		} else {
			c.RedisURL = v
		}
	default:
		r.str("REDIS_URL", &c.RedisURL, redisForms, urlWithScheme("redis", "rediss"))
	}
	r.integer("REDIS_PARTITIONS", &c.RedisPartitions, 1, 1024)
	r.integer("REDIS_MIN_REPLICAS", &c.RedisMinReplicas, 0, 10)
	r.integer("PERSIST_BACKLOG_CAP", &c.PersistBacklogCap, 100, 100_000_000)
	r.str("DATABASE_URL", &c.DatabaseURL, "postgres://user[:password]@host:port/db[?sslmode=...]", urlWithScheme("postgres", "postgresql"))
	r.databaseAuth(&c)
	r.boolean("ALLOW_DEV_SECRET", &c.AllowDevSecret)
	secret := getenv("JWT_SECRET")
	switch {
	case len(secret) < MinSecretBytes:
		r.fail("JWT_SECRET", strings.Repeat("*", len(secret)), fmt.Sprintf("a random secret of at least %d bytes; it is required", MinSecretBytes))
	case secret == DevSecret && !c.AllowDevSecret:
		r.fail("JWT_SECRET", "<the development secret>", "a secret of your own: the development secret is public (ALLOW_DEV_SECRET=true accepts it, for local and kind only)")
	case slices.Contains(weakSecrets, strings.ToLower(secret)):
		r.fail("JWT_SECRET", strings.Repeat("*", len(secret)), "a random secret, not an example's")
	}
	c.JWTSecret = []byte(secret)
	r.str("JWT_ISSUER", &c.JWTIssuer, "the iss tokens must carry", func(v string) bool { return len(v) <= 256 })
	r.str("JWT_AUDIENCE", &c.JWTAudience, "an aud tokens must carry", func(v string) bool { return len(v) <= 256 })
	r.duration("JWT_MAX_TTL", &c.JWTMaxTTL, time.Minute)
	r.integer("MAX_CONNECTIONS", &c.MaxConnections, 1, 10_000_000)
	r.integer("MAX_CONNECTIONS_PER_USER", &c.MaxConnectionsPerUser, 0, 10_000_000)
	r.integer("MAX_CONNECTIONS_PER_ADDRESS", &c.MaxConnectionsPerAddress, 0, 10_000_000)
	r.rate("QUOTA_USER_SENDS", &c.Quotas.UserSends)
	r.rate("QUOTA_USER_JOINS", &c.Quotas.UserJoins)
	r.rate("QUOTA_USER_ROOMS", &c.Quotas.UserRooms)
	r.rate("QUOTA_USER_RESUMES", &c.Quotas.UserResumes)
	r.rate("QUOTA_USER_HISTORY", &c.Quotas.UserHistory)
	r.rate("QUOTA_ADDRESS_CONNECTS", &c.Quotas.AddressConnects)
	r.prefixes("TRUSTED_PROXIES", &c.TrustedProxies)
	r.integer("CATCHUP_CONCURRENCY", &c.CatchupConcurrency, 1, 1024)
	r.duration("FRAME_TIMEOUT", &c.FrameTimeout, time.Second)
	var origins string
	r.str("ALLOWED_ORIGINS", &origins, "comma-separated origins like https://chat.example.com, or *", validOrigins)
	c.AllowedOrigins = splitList(origins)
	r.str("LOG_LEVEL", &c.LogLevel, "debug, info, warn or error", oneOf("debug", "info", "warn", "error"))
	r.duration("DRAIN_DELAY", &c.DrainDelay, 0)
	r.duration("DRAIN_TIMEOUT", &c.DrainTimeout, 0)
	r.integer("MAX_MESSAGE_BYTES", &c.MaxMessageBytes, 256, 1<<20)
	r.integer("SEND_QUEUE", &c.SendQueue, 1, 1<<16)
	r.upTo("WRITE_COALESCE", &c.WriteCoalesce, maxWriteCoalesce)
	r.upTo("PUBLISH_COALESCE", &c.PublishCoalesce, maxPublishCoalesce)
	r.str("INSTANCE_ID", &c.InstanceID, "a non-empty name without spaces", func(v string) bool { return v != "" && !strings.ContainsAny(v, " \t") })
	if v := getenv("DEBUG_ADDR"); v != "" {
		r.str("DEBUG_ADDR", &c.DebugAddr, "host:port for the pprof listener, e.g. 127.0.0.1:6060", func(v string) bool {
			_, _, err := net.SplitHostPort(v)
			return err == nil
		})
	}
	r.integer("HISTORY_SIZE", &c.HistorySize, 10, 1_000_000)
	r.integer("RECOVERY_LIMIT", &c.RecoveryLimit, 100, 10_000_000)
	r.number("RATE_LIMIT", &c.RateLimit, 0.1, 100_000)
	r.integer("RATE_BURST", &c.RateBurst, 1, 100_000)
	r.duration("PING_INTERVAL", &c.PingInterval, time.Second)
	return c, errors.Join(r.errs...)
}

// FromEnv loads the configuration from the process environment.
func FromEnv() (Config, error) { return Load(os.Getenv) }

// maxWriteCoalesce bounds WRITE_COALESCE: each frame to a busy connection
// may wait that long; maxPublishCoalesce bounds PUBLISH_COALESCE, a wait
// every send in a busy stream may add to its latency.
const (
	maxWriteCoalesce   = 100 * time.Millisecond
	maxPublishCoalesce = 10 * time.Millisecond
)

// MinSecretBytes is the shortest JWT_SECRET accepted: HS256's key should
// be as long as its 32-byte hash (RFC 7518, section 3.2).
const MinSecretBytes = 32

type reader struct {
	getenv func(string) string
	errs   []error
}

func (r *reader) fail(name, value, want string) {
	r.errs = append(r.errs, fmt.Errorf("%s=%q is invalid: want %s", name, value, want))
}

func (r *reader) str(name string, dst *string, want string, ok func(string) bool) {
	v := r.getenv(name)
	if v == "" {
		return
	}
	if !ok(v) {
		r.fail(name, v, want)
		return
	}
	*dst = v
}

func (r *reader) duration(name string, dst *time.Duration, min time.Duration) {
	want := fmt.Sprintf("a Go duration of at least %s, e.g. 5s or 1m30s", min)
	r.str(name, new(string), want, func(v string) bool {
		d, err := time.ParseDuration(v)
		if err != nil || d < min {
			return false
		}
		*dst = d
		return true
	})
}

// upTo reads a wait that 0 turns off, at most max; the refusal gives the
// default (*dst) as the example.
func (r *reader) upTo(name string, dst *time.Duration, max time.Duration) {
	r.str(name, new(string), fmt.Sprintf("a Go duration from 0 (off) to %s, e.g. %s", max, *dst), func(v string) bool {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > max {
			return false
		}
		*dst = d
		return true
	})
}

func (r *reader) integer(name string, dst *int, min, max int) {
	want := fmt.Sprintf("a whole number from %d to %d", min, max)
	r.str(name, new(string), want, func(v string) bool {
		n, err := strconv.Atoi(v)
		if err != nil || n < min || n > max {
			return false
		}
		*dst = n
		return true
	})
}

func (r *reader) number(name string, dst *float64, min, max float64) {
	want := fmt.Sprintf("a number from %g to %g", min, max)
	r.str(name, new(string), want, func(v string) bool {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil || n < min || n > max {
			return false
		}
		*dst = n
		return true
	})
}

func (r *reader) boolean(name string, dst *bool) {
	r.str(name, new(string), "true or false", func(v string) bool {
		b, err := strconv.ParseBool(v)
		*dst = b
		return err == nil
	})
}

// rate reads "count/duration", e.g. 600/1m, or 0 for no limit.
func (r *reader) rate(name string, dst *Rate) {
	r.str(name, new(string), "a count per duration like 600/1m (at most 10000000 per 1s to 24h), or 0 for no limit", func(v string) bool {
		if v == "0" || v == "off" {
			*dst = Rate{}
			return true
		}
		count, per, ok := strings.Cut(v, "/")
		n, err1 := strconv.Atoi(count)
		d, err2 := time.ParseDuration(per)
		if !ok || err1 != nil || err2 != nil || n < 1 || n > 10_000_000 || d < time.Second || d > 24*time.Hour {
			return false
		}
		*dst = Rate{Count: n, Per: d}
		return true
	})
}

// prefixes reads a comma-separated list of CIDRs or addresses.
func (r *reader) prefixes(name string, dst *[]netip.Prefix) {
	r.str(name, new(string), "comma-separated CIDRs or addresses, e.g. 10.0.0.0/8,127.0.0.1", func(v string) bool {
		var out []netip.Prefix
		for _, p := range splitList(v) {
			if a, err := netip.ParseAddr(p); err == nil {
				out = append(out, netip.PrefixFrom(a, a.BitLen()))
				continue
			}
			pf, err := netip.ParsePrefix(p)
			if err != nil {
				return false
			}
			out = append(out, pf.Masked())
		}
		*dst = out
		return true
	})
}

func urlWithScheme(schemes ...string) func(string) bool {
	return func(v string) bool {
		u, err := url.Parse(v)
		return err == nil && u.Host != "" && oneOf(schemes...)(u.Scheme)
	}
}

func oneOf(options ...string) func(string) bool {
	return func(v string) bool {
		for _, o := range options {
			if v == o {
				return true
			}
		}
		return false
	}
}

func validOrigins(v string) bool {
	for _, o := range splitList(v) {
		if o == "*" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return false
		}
	}
	return true
}

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, strings.TrimSuffix(p, "/"))
		}
	}
	return out
}
