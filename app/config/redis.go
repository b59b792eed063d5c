package config

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// SentinelScheme is REDIS_URL's scheme for a primary found through Sentinel.
const SentinelScheme = "redis+sentinel"

// ClusterScheme and ClusterTLSScheme are REDIS_URL's schemes for a Redis
// Cluster (cluster mode enabled), by its seed nodes.
const (
	ClusterScheme    = "redis+cluster"
	ClusterTLSScheme = "rediss+cluster"
)

// redisForms is every accepted form of REDIS_URL, for error messages.
const redisForms = "redis://[:password@]host:port[/db], rediss://... for TLS, " +
	SentinelScheme + "://[:password@]host1:port1[,host2:port2...]/<master-name>[?db=N&sentinel_password=...], or " +
	ClusterScheme + "://[user:password@]host1:port1[,host2:port2...] (" + ClusterTLSScheme + ":// for TLS) for a Redis Cluster"

// RedisSentinel is a parsed redis+sentinel:// REDIS_URL.
type RedisSentinel struct {
	Addrs              []string // the Sentinels, host:port
	Master             string   // the name the Sentinels monitor
	Username, Password string   // the primary's credentials
	SentinelPassword   string
	DB                 int
}

// RedisCluster is a parsed redis+cluster:// or rediss+cluster:// REDIS_URL.
type RedisCluster struct {
	Addrs              []string // seed nodes, host:port: the client learns the rest from them
	Username, Password string
	TLS                bool
}

// IsCluster tells whether a REDIS_URL names a Redis Cluster.
func IsCluster(raw string) bool {
	return strings.HasPrefix(raw, ClusterScheme+"://") || strings.HasPrefix(raw, ClusterTLSScheme+"://")
}

func badRedisURL(raw, why string) error {
	return fmt.Errorf("REDIS_URL=%q is invalid: %s; want %s", RedactURL(raw), why, redisForms)
}

// hostList checks a comma-separated list of host:port.
func hostList(what, hosts string) ([]string, error) {
	var addrs []string
	for _, a := range strings.Split(hosts, ",") {
		if host, port, err := net.SplitHostPort(a); err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("%s address %q is not host:port", what, a)
		}
		addrs = append(addrs, a)
	}
	return addrs, nil
}

// ParseRedisSentinel reads
// redis+sentinel://[:password@]host1:port1[,host2:port2...]/<master-name>[?db=N&sentinel_password=...].
func ParseRedisSentinel(raw string) (RedisSentinel, error) {
	var s RedisSentinel
	u, hosts, err := splitHosts(raw, SentinelScheme)
	if err != nil {
		return s, badRedisURL(raw, err.Error())
	}
	if s.Addrs, err = hostList("sentinel", hosts); err != nil {
		return s, badRedisURL(raw, err.Error())
	}
	s.Master = strings.TrimPrefix(u.Path, "/")
	if s.Master == "" || strings.Contains(s.Master, "/") {
		return RedisSentinel{}, badRedisURL(raw, "the path must be the master name, e.g. /mymaster")
	}
	if u.User != nil {
		s.Username = u.User.Username()
		s.Password, _ = u.User.Password()
	}
	q := u.Query()
	for k := range q {
		if k != "db" && k != "sentinel_password" {
			return RedisSentinel{}, badRedisURL(raw, fmt.Sprintf("unknown parameter %q", k))
		}
	}
	if v := q.Get("db"); v != "" {
		if s.DB, err = strconv.Atoi(v); err != nil || s.DB < 0 {
			return RedisSentinel{}, badRedisURL(raw, fmt.Sprintf("db=%q is not a database number", v))
		}
	}
	s.SentinelPassword = q.Get("sentinel_password")
	return s, nil
}

// ParseRedisCluster reads
// redis+cluster://[user:password@]host1:port1[,host2:port2...] (rediss+cluster:// for TLS).
// A cluster has only database 0, so no path is accepted, nor parameters.
func ParseRedisCluster(raw string) (RedisCluster, error) {
	c := RedisCluster{TLS: strings.HasPrefix(raw, ClusterTLSScheme+"://")}
	scheme := ClusterScheme
	if c.TLS {
		scheme = ClusterTLSScheme
	}
	u, hosts, err := splitHosts(raw, scheme)
	if err != nil {
		return RedisCluster{}, badRedisURL(raw, err.Error())
	}
	if c.Addrs, err = hostList("seed node", hosts); err != nil {
		return RedisCluster{}, badRedisURL(raw, err.Error())
	}
	if p := strings.TrimPrefix(u.Path, "/"); p != "" {
		return RedisCluster{}, badRedisURL(raw, fmt.Sprintf("a cluster has only database 0, so no path (got /%s)", p))
	}
	if u.RawQuery != "" {
		return RedisCluster{}, badRedisURL(raw, "a cluster URL takes no parameters")
	}
	if u.User != nil {
		c.Username = u.User.Username()
		c.Password, _ = u.User.Password()
	}
	return c, nil
}

// splitHosts parses a URL of scheme whose host is a list, which net/url
// refuses: the list is returned apart and u has a placeholder host.
func splitHosts(raw, scheme string) (u *url.URL, hosts string, err error) {
	rest, ok := strings.CutPrefix(raw, scheme+"://")
	if !ok {
		return nil, "", fmt.Errorf("the scheme is not %s", scheme)
	}
	authority, tail, hasPath := strings.Cut(rest, "/")
	if !hasPath {
		authority, tail, _ = strings.Cut(rest, "?")
		if tail != "" {
			tail = "?" + tail
		}
	}
	userinfo, hosts := "", authority
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		userinfo, hosts = authority[:i+1], authority[i+1:]
	}
	u, err = url.Parse("redis://" + userinfo + "hosts/" + tail)
	return u, hosts, err
}

// multiHostScheme is the scheme of a REDIS_URL form whose host is a list.
func multiHostScheme(raw string) string {
	for _, s := range []string{SentinelScheme, ClusterScheme, ClusterTLSScheme} {
		if strings.HasPrefix(raw, s+"://") {
			return s
		}
	}
	return ""
}

// RedactURL hides the passwords of a REDIS_URL (any form) for logs and errors.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if scheme := multiHostScheme(raw); scheme != "" {
		var hosts string
		if u, hosts, err = splitHosts(raw, scheme); err == nil {
			u.Scheme, u.Host = scheme, hosts
			if u.Path == "/" {
				u.Path = ""
			}
		}
	}
	if err != nil {
		return "(unparsable)"
	}
	if q := u.Query(); q.Has("sentinel_password") {
		q.Set("sentinel_password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}
