package main

import (
	"strings"
	"testing"

	"github.com/switchboard-dev/switchboard/app/config"
)

// jwtSecret is checked as the chat server checks JWT_SECRET, so that a
// stack never deploys pods that refuse to start: at least 32 bytes on
// every target, and the public development secret on kind only, whose
// chat pods then get ALLOW_DEV_SECRET=true. The value is never shown.
func TestJWTSecretIsLongAndTheDevSecretOnlyOnKind(t *testing.T) {
	short := strings.Repeat("s", config.MinSecretBytes-1)
	for _, tc := range []struct {
		name   string
		config map[string]string
		want   string // "" accepted, else in the refusal
	}{
		{"kind, 31 bytes", kindConfig("jwtSecret", short), "at least 32 bytes"},
		{"aws, 31 bytes", awsConfig("jwtSecret", short), "at least 32 bytes"},
		{"aws, the dev secret", awsConfig("jwtSecret", config.DevSecret), "development secret is public"},
		{"kind, the dev secret", kindConfig("jwtSecret", config.DevSecret), ""},
		{"kind, 32 bytes", kindConfig("jwtSecret", strings.Repeat("s", config.MinSecretBytes)), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := run(tc.config)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), "switchboard:jwtSecret") || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err %v: want switchboard:jwtSecret refused with %q", err, tc.want)
				}
				if strings.Contains(err.Error(), tc.config["switchboard:jwtSecret"]) {
					t.Errorf("the refusal shows the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			allow := env(chatContainer(t, s))["ALLOW_DEV_SECRET"]
			if dev := tc.config["switchboard:jwtSecret"] == config.DevSecret; dev != (allow == "true") {
				t.Errorf("ALLOW_DEV_SECRET=%v with the dev secret %v: want true only with it", allow, dev)
			}
		})
	}
	// The committed stacks' own secrets pass (the usual test secret).
	s, err := run(kindConfig())
	if err != nil {
		t.Fatal(err)
	}
	if allow, ok := env(chatContainer(t, s))["ALLOW_DEV_SECRET"]; ok {
		t.Errorf("ALLOW_DEV_SECRET=%v with a secret of the stack's own: want it unset", allow)
	}
}
