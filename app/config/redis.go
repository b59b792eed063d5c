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

// redisForms is every accepted form of REDIS_URL, for error messages.
const redisForms = "redis://[:password@]host:port[/db], rediss://... for TLS, or " +
	SentinelScheme + "://[:password@]host1:port1[,host2:port2...]/<master-name>[?db=N&sentinel_password=...]"

// RedisSentinel is a parsed redis+sentinel:// REDIS_URL.
type RedisSentinel struct {
	Addrs              []string // the Sentinels, host:port
	Master             string   // the name the Sentinels monitor
	Username, Password string   // the primary's credentials
	SentinelPassword   string
	DB                 int
}

// ParseRedisSentinel reads
// redis+sentinel://[:password@]host1:port1[,host2:port2...]/<master-name>[?db=N&sentinel_password=...].
func ParseRedisSentinel(raw string) (RedisSentinel, error) {
	var s RedisSentinel
	u, hosts, err := splitSentinel(raw)
	bad := func(why string) (RedisSentinel, error) {
		return RedisSentinel{}, fmt.Errorf("REDIS_URL=%q is invalid: %s; want %s", RedactURL(raw), why, redisForms)
	}
	if err != nil {
		return bad(err.Error())
	}
	for _, a := range strings.Split(hosts, ",") {
		if host, port, err := net.SplitHostPort(a); err != nil || host == "" || port == "" {
			return bad(fmt.Sprintf("sentinel address %q is not host:port", a))
		}
		s.Addrs = append(s.Addrs, a)
	}
	s.Master = strings.TrimPrefix(u.Path, "/")
	if s.Master == "" || strings.Contains(s.Master, "/") {
		return bad("the path must be the master name, e.g. /mymaster")
	}
	if u.User != nil {
		s.Username = u.User.Username()
		s.Password, _ = u.User.Password()
	}
	q := u.Query()
	for k := range q {
		if k != "db" && k != "sentinel_password" {
			return bad(fmt.Sprintf("unknown parameter %q", k))
		}
	}
	if v := q.Get("db"); v != "" {
		if s.DB, err = strconv.Atoi(v); err != nil || s.DB < 0 {
			return bad(fmt.Sprintf("db=%q is not a database number", v))
		}
	}
	s.SentinelPassword = q.Get("sentinel_password")
	return s, nil
}

// splitSentinel parses a redis+sentinel:// URL whose host is a list, which
// net/url refuses: the list is returned apart and u has a placeholder host.
func splitSentinel(raw string) (u *url.URL, hosts string, err error) {
	rest, ok := strings.CutPrefix(raw, SentinelScheme+"://")
	if !ok {
		return nil, "", fmt.Errorf("the scheme is not %s", SentinelScheme)
	}
	authority, tail, _ := strings.Cut(rest, "/")
	userinfo, hosts := "", authority
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		userinfo, hosts = authority[:i+1], authority[i+1:]
	}
	u, err = url.Parse("redis://" + userinfo + "sentinels/" + tail)
	return u, hosts, err
}

// RedactURL hides the passwords of a REDIS_URL (any form) for logs and errors.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if strings.HasPrefix(raw, SentinelScheme+"://") {
		var hosts string
		if u, hosts, err = splitSentinel(raw); err == nil {
			u.Scheme, u.Host = SentinelScheme, hosts
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
