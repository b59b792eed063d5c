package config

import (
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadAppliesDefaultsAndReadsEveryVariable(t *testing.T) {
	c, err := Load(env(map[string]string{"JWT_SECRET": "dev-secret"}))
	if err != nil {
		t.Fatalf("defaults with only JWT_SECRET: %v", err)
	}
	if c.ListenAddr != ":8080" || c.SendQueue != 256 || c.DrainDelay != 5*time.Second || c.InstanceID == "" {
		t.Fatalf("defaults not applied: %+v", c)
	}
	c, err = Load(env(map[string]string{
		"LISTEN_ADDR": "127.0.0.1:9000", "REDIS_URL": "rediss://:pw@cache:6379/1",
		"DATABASE_URL": "postgresql://u:p@db:5432/chat?sslmode=require", "JWT_SECRET": "0123456789",
		"ALLOWED_ORIGINS": "http://localhost:8080, https://chat.example.com/", "LOG_LEVEL": "debug",
		"DRAIN_DELAY": "1s", "DRAIN_TIMEOUT": "2s", "MAX_MESSAGE_BYTES": "1024", "SEND_QUEUE": "8",
		"INSTANCE_ID": "chat-1", "HISTORY_SIZE": "50", "RATE_LIMIT": "2.5", "RATE_BURST": "3", "PING_INTERVAL": "10s",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"http://localhost:8080", "https://chat.example.com"}
	if strings.Join(c.AllowedOrigins, " ") != strings.Join(want, " ") || c.RateLimit != 2.5 || c.InstanceID != "chat-1" ||
		c.DrainTimeout != 2*time.Second || c.PingInterval != 10*time.Second || c.MaxMessageBytes != 1024 || c.HistorySize != 50 {
		t.Fatalf("values not read: %+v", c)
	}
}

func TestLoadReportsEveryBadValueOnItsOwnLine(t *testing.T) {
	bad := map[string]string{
		"LISTEN_ADDR":       "8080",
		"REDIS_URL":         "http://cache:6379",
		"DATABASE_URL":      "mysql://db",
		"JWT_SECRET":        "short",
		"ALLOWED_ORIGINS":   "localhost:8080",
		"LOG_LEVEL":         "loud",
		"DRAIN_DELAY":       "5",
		"DRAIN_TIMEOUT":     "-1s",
		"MAX_MESSAGE_BYTES": "10",
		"SEND_QUEUE":        "zero",
		"INSTANCE_ID":       "chat 1",
		"HISTORY_SIZE":      "1",
		"RECOVERY_LIMIT":    "99",
		"RATE_LIMIT":        "0",
		"RATE_BURST":        "0",
		"PING_INTERVAL":     "10ms",
	}
	_, err := Load(env(bad))
	if err == nil {
		t.Fatal("Load accepted every bad value")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(bad) {
		t.Fatalf("got %d error lines, want %d:\n%v", len(lines), len(bad), err)
	}
	for name := range bad {
		if !strings.Contains(err.Error(), name+"=") {
			t.Errorf("no line names %s:\n%v", name, err)
		}
	}
	if strings.Contains(err.Error(), "short") {
		t.Errorf("the error leaks the secret: %v", err)
	}
}

func TestLoadRequiresJWTSecret(t *testing.T) {
	_, err := Load(env(nil))
	if err == nil || !strings.Contains(err.Error(), "JWT_SECRET") {
		t.Fatalf("missing JWT_SECRET: err = %v", err)
	}
}
