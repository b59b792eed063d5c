package config

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// testSecret is a JWT_SECRET the server accepts: MinSecretBytes or more.
const testSecret = "config-test-secret-0123456789abcdef"

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadAppliesDefaultsAndReadsEveryVariable(t *testing.T) {
	c, err := Load(env(map[string]string{"JWT_SECRET": testSecret}))
	if err != nil {
		t.Fatalf("defaults with only JWT_SECRET: %v", err)
	}
	if c.ListenAddr != ":8080" || c.SendQueue != 256 || c.DrainDelay != 5*time.Second || c.InstanceID == "" {
		t.Fatalf("defaults not applied: %+v", c)
	}
	c, err = Load(env(map[string]string{
		"LISTEN_ADDR": "127.0.0.1:9000", "REDIS_URL": "rediss://:pw@cache:6379/1",
		"DATABASE_URL": "postgresql://u:p@db:5432/chat?sslmode=require", "JWT_SECRET": testSecret,
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
		"WRITE_COALESCE":    "1s",
		"PUBLISH_COALESCE":  "1s",
		"INSTANCE_ID":       "chat 1",
		"HISTORY_SIZE":      "1",
		"RECOVERY_LIMIT":    "99",
		"RATE_LIMIT":        "0",
		"RATE_BURST":        "0",
		"PING_INTERVAL":     "10ms",
		"JWT_MAX_TTL":       "30s",
		"QUOTA_USER_SENDS":  "10",
		"TRUSTED_PROXIES":   "nope",
		"ALLOW_DEV_SECRET":  "maybe",
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

// WRITE_COALESCE and PUBLISH_COALESCE: a Go duration from 0 (off) to a
// bound; a refusal names the variable and the accepted form.
func TestCoalesceWaits(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		want        time.Duration // -1: refused
		form        string
	}{
		{"WRITE_COALESCE", "", 24 * time.Millisecond, ""},
		{"WRITE_COALESCE", "0", 0, ""},
		{"WRITE_COALESCE", "20ms", 20 * time.Millisecond, ""},
		{"WRITE_COALESCE", "100ms", 100 * time.Millisecond, ""},
		{"WRITE_COALESCE", "101ms", -1, "from 0 (off) to 100ms"},
		{"WRITE_COALESCE", "-1ms", -1, "from 0 (off) to 100ms"},
		{"WRITE_COALESCE", "10", -1, "from 0 (off) to 100ms"},
		{"PUBLISH_COALESCE", "", time.Millisecond, ""},
		{"PUBLISH_COALESCE", "0", 0, ""},
		{"PUBLISH_COALESCE", "250us", 250 * time.Microsecond, ""},
		{"PUBLISH_COALESCE", "10ms", 10 * time.Millisecond, ""},
		{"PUBLISH_COALESCE", "11ms", -1, "from 0 (off) to 10ms"},
		{"PUBLISH_COALESCE", "1", -1, "from 0 (off) to 10ms"},
	} {
		c, err := Load(env(map[string]string{"JWT_SECRET": testSecret, tc.name: tc.value}))
		got := map[string]time.Duration{"WRITE_COALESCE": c.WriteCoalesce, "PUBLISH_COALESCE": c.PublishCoalesce}[tc.name]
		switch {
		case tc.want < 0 && (err == nil || !strings.Contains(err.Error(), tc.name+"=") || !strings.Contains(err.Error(), tc.form)):
			t.Errorf("%s=%q: err = %v, want a refusal naming it and its form", tc.name, tc.value, err)
		case tc.want >= 0 && (err != nil || got != tc.want):
			t.Errorf("%s=%q: %v, err %v; want %v", tc.name, tc.value, got, err, tc.want)
		}
	}
}

func TestLoadRequiresJWTSecret(t *testing.T) {
	_, err := Load(env(nil))
	if err == nil || !strings.Contains(err.Error(), "JWT_SECRET") {
		t.Fatalf("missing JWT_SECRET: err = %v", err)
	}
}

// JWT_SECRET: at least MinSecretBytes, not the development secret unless
// ALLOW_DEV_SECRET=true, never an example's; the error never shows it.
func TestJWTSecretRules(t *testing.T) {
	for _, tc := range []struct {
		name, secret, allowDev string
		want                   string // "" accepted, else in the error
	}{
		{"missing", "", "", "at least 32 bytes"},
		{"31 bytes", strings.Repeat("k", 31), "", "at least 32 bytes"},
		{"32 bytes", strings.Repeat("k", 32), "", ""},
		{"the dev secret", DevSecret, "", "ALLOW_DEV_SECRET=true"},
		{"the dev secret, allowed", DevSecret, "true", ""},
		{"the dev secret, explicitly not allowed", DevSecret, "false", "ALLOW_DEV_SECRET=true"},
		{"a secret of one's own with ALLOW_DEV_SECRET", testSecret, "true", ""},
		{"the old default", "dev-secret", "true", "JWT_SECRET"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(env(map[string]string{"JWT_SECRET": tc.secret, "ALLOW_DEV_SECRET": tc.allowDev}))
			if tc.want == "" {
				if err != nil || string(c.JWTSecret) != tc.secret {
					t.Fatalf("err %v, secret %q: want it accepted", err, c.JWTSecret)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "JWT_SECRET=") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v: want JWT_SECRET refused with %q", err, tc.want)
			}
			if tc.secret != "" && strings.Contains(err.Error(), tc.secret) {
				t.Errorf("the error shows the secret: %v", err)
			}
		})
	}
	for _, weak := range weakSecrets {
		for _, s := range []string{weak, strings.ToUpper(weak)} {
			if _, err := Load(env(map[string]string{"JWT_SECRET": s, "ALLOW_DEV_SECRET": "true"})); err == nil || !strings.Contains(err.Error(), "JWT_SECRET=") {
				t.Errorf("example secret %q: err %v, want refused", s, err)
			}
		}
	}
}

func TestJWTIssuerAudienceAndMaxTTL(t *testing.T) {
	c, err := Load(env(map[string]string{"JWT_SECRET": testSecret}))
	if err != nil || c.JWTIssuer != "" || c.JWTAudience != "" || c.JWTMaxTTL != 24*time.Hour || c.AllowDevSecret {
		t.Fatalf("defaults: %+v %v, want no issuer or audience, 24h, dev secret refused", c, err)
	}
	c, err = Load(env(map[string]string{"JWT_SECRET": testSecret, "JWT_ISSUER": "https://id.example", "JWT_AUDIENCE": "switchboard", "JWT_MAX_TTL": "1m"}))
	if err != nil || c.JWTIssuer != "https://id.example" || c.JWTAudience != "switchboard" || c.JWTMaxTTL != time.Minute {
		t.Fatalf("set: %+v %v", c, err)
	}
	for _, bad := range []string{"59s", "1ms", "0", "1", "day"} {
		if _, err := Load(env(map[string]string{"JWT_SECRET": testSecret, "JWT_MAX_TTL": bad})); err == nil || !strings.Contains(err.Error(), "JWT_MAX_TTL=") {
			t.Errorf("JWT_MAX_TTL=%s: err %v, want refused", bad, err)
		}
	}
	if _, err := Load(env(map[string]string{"JWT_SECRET": testSecret, "JWT_ISSUER": strings.Repeat("i", 257)})); err == nil || !strings.Contains(err.Error(), "JWT_ISSUER=") {
		t.Errorf("a 257-byte JWT_ISSUER: err %v, want refused", err)
	}
}

// Every QUOTA_* reads count/duration, or 0 (off); a bad form is refused
// naming the variable.
func TestQuotaRates(t *testing.T) {
	quotas := map[string]func(*Config) Rate{
		"QUOTA_USER_SENDS":       func(c *Config) Rate { return c.Quotas.UserSends },
		"QUOTA_USER_JOINS":       func(c *Config) Rate { return c.Quotas.UserJoins },
		"QUOTA_USER_ROOMS":       func(c *Config) Rate { return c.Quotas.UserRooms },
		"QUOTA_USER_RESUMES":     func(c *Config) Rate { return c.Quotas.UserResumes },
		"QUOTA_USER_HISTORY":     func(c *Config) Rate { return c.Quotas.UserHistory },
		"QUOTA_ADDRESS_CONNECTS": func(c *Config) Rate { return c.Quotas.AddressConnects },
	}
	for name, get := range quotas {
		t.Run(name, func(t *testing.T) {
			def := Defaults()
			if get(&def).Off() {
				t.Errorf("%s is off by default", name)
			}
			for v, want := range map[string]Rate{"600/1m": {600, time.Minute}, "1/1s": {1, time.Second}, "10000000/24h": {10_000_000, 24 * time.Hour}, "0": {}} {
				c, err := Load(env(map[string]string{"JWT_SECRET": testSecret, name: v}))
				if err != nil || get(&c) != want {
					t.Errorf("%s=%s: %v %v, want %v", name, v, get(&c), err, want)
				}
				if v == "0" && !get(&c).Off() {
					t.Errorf("%s=0 is not off", name)
				}
			}
			for _, bad := range []string{"10", "1/1ms", "x/1m", "0/1m", "-1/1m", "1/25h", "10000001/1m", "1/", "/1m"} {
				_, err := Load(env(map[string]string{"JWT_SECRET": testSecret, name: bad}))
				if err == nil || !strings.Contains(err.Error(), name+"=") || !strings.Contains(err.Error(), "600/1m") {
					t.Errorf("%s=%s: err %v, want refused naming %s and the form", name, bad, err, name)
				}
			}
		})
	}
	if r := (Rate{600, time.Minute}); r.String() != "600/1m0s" || (Rate{}).String() != "0" {
		t.Errorf("Rate.String: %s, %s", r, Rate{})
	}
}

func TestTrustedProxies(t *testing.T) {
	c, err := Load(env(map[string]string{"JWT_SECRET": testSecret, "TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1"}))
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32")}
	if err != nil || !slices.Equal(c.TrustedProxies, want) {
		t.Fatalf("TRUSTED_PROXIES: %v %v, want %v", c.TrustedProxies, err, want)
	}
	if c, _ := Load(env(map[string]string{"JWT_SECRET": testSecret})); c.TrustedProxies != nil {
		t.Errorf("TRUSTED_PROXIES unset: %v, want none", c.TrustedProxies)
	}
	for _, bad := range []string{"nope", "10.0.0.0/33", "10.0.0.0/8,nope"} {
		if _, err := Load(env(map[string]string{"JWT_SECRET": testSecret, "TRUSTED_PROXIES": bad})); err == nil || !strings.Contains(err.Error(), "TRUSTED_PROXIES=") {
			t.Errorf("TRUSTED_PROXIES=%s: err %v, want refused", bad, err)
		}
	}
}
