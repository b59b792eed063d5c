package config

import (
	"strings"
	"testing"
)

func TestDatabaseAuthIsPasswordOrRDSIAMOverSSL(t *testing.T) {
	for _, tc := range []struct {
		name, auth, url string
		want            string // "" = accepted; else a word of the refusal
	}{
		{"default", "", "", ""},
		{"password", "password", "postgres://u:p@db:5432/chat", ""},
		{"rds-iam over ssl", "rds-iam", "postgres://switchboard_app@db:5432/chat?sslmode=require", ""},
		{"rds-iam verify-full", "rds-iam", "postgres://switchboard_app@db:5432/chat?sslmode=verify-full", ""},
		{"rds-iam without ssl", "rds-iam", "postgres://switchboard_app@db:5432/chat?sslmode=disable", "sslmode=require"},
		{"rds-iam without sslmode", "rds-iam", "postgres://switchboard_app@db:5432/chat", "sslmode=require"},
		{"rds-iam without user", "rds-iam", "postgres://db:5432/chat?sslmode=require", "a user"},
		{"unknown", "kerberos", "", "DATABASE_AUTH"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(env(map[string]string{"JWT_SECRET": testSecret, "DATABASE_AUTH": tc.auth, "DATABASE_URL": tc.url}))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want == "" && tc.auth == "" && c.DatabaseAuth != AuthPassword:
				t.Errorf("default DATABASE_AUTH %q, want %q", c.DatabaseAuth, AuthPassword)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("err %v: want a refusal naming %q", err, tc.want)
			}
		})
	}
}
