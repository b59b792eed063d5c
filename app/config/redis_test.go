package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestLoadReadsRedisDurabilitySettings(t *testing.T) {
	c, err := Load(env(map[string]string{
		"JWT_SECRET": testSecret, "REDIS_URL": "redis+sentinel://:pw@s1:26379,s2:26380/chat?db=2&sentinel_password=sp",
		"REDIS_MIN_REPLICAS": "1", "PERSIST_BACKLOG_CAP": "5000",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.RedisMinReplicas != 1 || c.PersistBacklogCap != 5000 || !strings.HasPrefix(c.RedisURL, "redis+sentinel://") {
		t.Fatalf("values not read: %+v", c)
	}
	if d := Defaults(); d.RedisMinReplicas != 0 || d.PersistBacklogCap != 100_000 {
		t.Fatalf("defaults: REDIS_MIN_REPLICAS=%d PERSIST_BACKLOG_CAP=%d, want 0 and 100000", d.RedisMinReplicas, d.PersistBacklogCap)
	}
}

func TestParseRedisSentinel(t *testing.T) {
	s, err := ParseRedisSentinel("redis+sentinel://:pw@s1:26379,s2:26380,10.0.0.3:26379/chat?db=2&sentinel_password=sp")
	want := RedisSentinel{Addrs: []string{"s1:26379", "s2:26380", "10.0.0.3:26379"}, Master: "chat", Password: "pw", SentinelPassword: "sp", DB: 2}
	if err != nil || !reflect.DeepEqual(s, want) {
		t.Fatalf("got %+v, %v; want %+v", s, err, want)
	}
	if s, err := ParseRedisSentinel("redis+sentinel://s1:26379/mymaster"); err != nil || s.Master != "mymaster" || s.DB != 0 || s.Password != "" {
		t.Fatalf("minimal form: %+v, %v", s, err)
	}
}

func TestParseRedisCluster(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want RedisCluster
	}{
		{"redis+cluster://n1:6379", RedisCluster{Addrs: []string{"n1:6379"}}},
		{"redis+cluster://n1:6379,10.0.0.2:7000,n3:7001/", RedisCluster{Addrs: []string{"n1:6379", "10.0.0.2:7000", "n3:7001"}}},
		{"redis+cluster://:pw@n1:6379", RedisCluster{Addrs: []string{"n1:6379"}, Password: "pw"}},
		{"rediss+cluster://chat:p%40ss@cfg.example.cache.amazonaws.com:6379", RedisCluster{Addrs: []string{"cfg.example.cache.amazonaws.com:6379"}, Username: "chat", Password: "p@ss", TLS: true}},
	} {
		got, err := ParseRedisCluster(tc.raw)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseRedisCluster(%q) = %+v, %v; want %+v", tc.raw, got, err, tc.want)
		}
		if !IsCluster(tc.raw) {
			t.Errorf("IsCluster(%q) = false", tc.raw)
		}
	}
	for _, raw := range []string{"redis://n1:6379", "redis+sentinel://s1:26379/chat", "redis+clusters://n1:6379"} {
		if IsCluster(raw) {
			t.Errorf("IsCluster(%q) = true", raw)
		}
	}
}

func TestLoadReadsTheClusterFormAndItsPartitions(t *testing.T) {
	c, err := Load(env(map[string]string{"JWT_SECRET": testSecret, "REDIS_URL": "redis+cluster://n1:7000,n2:7001", "REDIS_PARTITIONS": "64"}))
	if err != nil || c.RedisURL != "redis+cluster://n1:7000,n2:7001" || c.RedisPartitions != 64 {
		t.Fatalf("got %q, %d partitions, %v", c.RedisURL, c.RedisPartitions, err)
	}
	if d := Defaults(); d.RedisPartitions != 128 {
		t.Fatalf("REDIS_PARTITIONS defaults to %d, want 128", d.RedisPartitions)
	}
}

func TestLoadRefusesBadRedisSettingsNamingTheVariable(t *testing.T) {
	for _, tc := range []struct{ name, value, why string }{
		{"REDIS_URL", "redis+sentinel://s1:26379", "master name"},
		{"REDIS_URL", "redis+sentinel://s1:26379//", "master name"},
		{"REDIS_URL", "redis+sentinel://s1:26379,s2/chat", `"s2" is not host:port`},
		{"REDIS_URL", "redis+sentinel://s1:26379/chat?db=x", `db="x"`},
		{"REDIS_URL", "redis+sentinel://s1:26379/chat?master=y", `unknown parameter "master"`},
		{"REDIS_URL", "redis+sentinel://:secretpw@s1:26379/chat?db=-1&sentinel_password=secretsp", "db="},
		{"REDIS_URL", "sentinel://s1:26379/chat", "redis+sentinel://"},
		{"REDIS_URL", "redis+cluster://", `"" is not host:port`},
		{"REDIS_URL", "redis+cluster://n1:7000,n2", `"n2" is not host:port`},
		{"REDIS_URL", "redis+cluster://n1:7000/2", "only database 0"},
		{"REDIS_URL", "rediss+cluster://:secretpw@n1:7000?db=1", "no parameters"},
		{"REDIS_URL", "cluster://n1:7000", "redis+cluster://"},
		{"REDIS_PARTITIONS", "0", "1 to 1024"},
		{"REDIS_PARTITIONS", "1025", "1 to 1024"},
		{"REDIS_MIN_REPLICAS", "-1", "0 to 10"},
		{"REDIS_MIN_REPLICAS", "one", "0 to 10"},
		{"PERSIST_BACKLOG_CAP", "10", "100 to 100000000"},
	} {
		_, err := Load(env(map[string]string{"JWT_SECRET": testSecret, tc.name: tc.value}))
		if err == nil {
			t.Errorf("%s=%s accepted", tc.name, tc.value)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, tc.name+"=") || !strings.Contains(msg, tc.why) {
			t.Errorf("%s=%s: error %q does not name the variable and %q", tc.name, tc.value, msg, tc.why)
		}
		if tc.name == "REDIS_URL" && (!strings.Contains(msg, "redis+sentinel://[:password@]host1:port1") || !strings.Contains(msg, "redis+cluster://[user:password@]host1:port1")) {
			t.Errorf("%s=%s: error %q does not give the accepted forms", tc.name, tc.value, msg)
		}
		if strings.Contains(msg, "secretpw") || strings.Contains(msg, "secretsp") {
			t.Errorf("the error leaks a password: %s", msg)
		}
	}
}

func TestRedactURLHidesEveryPassword(t *testing.T) {
	for raw, want := range map[string]string{
		"redis://:pw@cache:6379/0": "redis://:xxxxx@cache:6379/0",
		"redis+sentinel://:pw@s1:26379,s2:26379/chat?sentinel_password=sp": "redis+sentinel://:xxxxx@s1:26379,s2:26379/chat?sentinel_password=xxxxx",
		"rediss+cluster://chat:pw@n1:7000,n2:7001":                         "rediss+cluster://chat:xxxxx@n1:7000,n2:7001",
	} {
		if got := RedactURL(raw); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", raw, got, want)
		}
	}
}
