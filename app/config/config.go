// Package config reads the chat server's settings from the environment and
// validates all of them at once, so a bad deployment fails at start with one
// line per bad value.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
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
	InstanceID      string        // INSTANCE_ID
	HistorySize     int           // HISTORY_SIZE
	RecoveryLimit   int           // RECOVERY_LIMIT: most missed messages a resume delivers
	RateLimit       float64       // RATE_LIMIT
	RateBurst       int           // RATE_BURST
	PingInterval    time.Duration // PING_INTERVAL
	// RedisMinReplicas > 0 acks a send only once that many replicas have it.
	RedisMinReplicas int // REDIS_MIN_REPLICAS
	// PersistBacklogCap is how many accepted messages may wait for Postgres
	// before sends are refused with overloaded.
	PersistBacklogCap int // PERSIST_BACKLOG_CAP
	// DebugAddr serves Go's pprof profiles on a listener of its own, never
	// the public one; empty (the default) serves none.
	DebugAddr string // DEBUG_ADDR
}

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
		InstanceID:      host,
		HistorySize:     1000,
		RecoveryLimit:   10_000,
		RateLimit:       20,
		RateBurst:       40,
		PingInterval:    25 * time.Second,

		PersistBacklogCap: 100_000,
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
	if v := getenv("REDIS_URL"); strings.HasPrefix(v, SentinelScheme+"://") {
		if _, err := ParseRedisSentinel(v); err != nil {
			r.errs = append(r.errs, err)
		} else {
			c.RedisURL = v
		}
	} else {
		r.str("REDIS_URL", &c.RedisURL, redisForms, urlWithScheme("redis", "rediss"))
	}
	r.integer("REDIS_MIN_REPLICAS", &c.RedisMinReplicas, 0, 10)
	r.integer("PERSIST_BACKLOG_CAP", &c.PersistBacklogCap, 100, 100_000_000)
	r.str("DATABASE_URL", &c.DatabaseURL, "postgres://user[:password]@host:port/db[?sslmode=...]", urlWithScheme("postgres", "postgresql"))
	r.databaseAuth(&c)
	secret := getenv("JWT_SECRET")
	if len(secret) < 8 {
		r.fail("JWT_SECRET", strings.Repeat("*", len(secret)), "a secret of at least 8 bytes; it is required")
	}
	c.JWTSecret = []byte(secret)
	var origins string
	r.str("ALLOWED_ORIGINS", &origins, "comma-separated origins like https://chat.example.com, or *", validOrigins)
	c.AllowedOrigins = splitList(origins)
	r.str("LOG_LEVEL", &c.LogLevel, "debug, info, warn or error", oneOf("debug", "info", "warn", "error"))
	r.duration("DRAIN_DELAY", &c.DrainDelay, 0)
	r.duration("DRAIN_TIMEOUT", &c.DrainTimeout, 0)
	r.integer("MAX_MESSAGE_BYTES", &c.MaxMessageBytes, 256, 1<<20)
	r.integer("SEND_QUEUE", &c.SendQueue, 1, 1<<16)
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
