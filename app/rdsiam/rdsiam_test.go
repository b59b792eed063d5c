package rdsiam

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
)

var keys = aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
	return aws.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "secret", SessionToken: "session", Source: "test"}, nil
})

// A token is a SigV4-presigned "connect" request for the database user at
// host:port, for the rds-db service, valid 15 minutes, without a scheme:
// https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/UsingWithRDS.IAMDBAuth.Connecting.html
func TestTokenIsAPresignedConnectForTheUserAtTheEndpoint(t *testing.T) {
	password, err := Password("postgres://switchboard_app@db.abc.eu-west-1.rds.amazonaws.com/switchboard?sslmode=require", "eu-west-1", keys)
	if err != nil {
		t.Fatal(err)
	}
	first, err := password(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(first, "://") {
		t.Fatalf("token %q carries a scheme: RDS wants host:port/?…", first)
	}
	u, err := url.Parse("https://" + first)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	for k, want := range map[string]string{
		"Action": "connect", "DBUser": "switchboard_app", "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
		"X-Amz-Expires": "900", "X-Amz-Security-Token": "session",
	} {
		if q.Get(k) != want {
			t.Errorf("%s = %q, want %q", k, q.Get(k), want)
		}
	}
	if u.Host != "db.abc.eu-west-1.rds.amazonaws.com:5432" {
		t.Errorf("host %q: want the endpoint with the default port 5432", u.Host)
	}
	if c := q.Get("X-Amz-Credential"); !strings.HasSuffix(c, "/eu-west-1/rds-db/aws4_request") {
		t.Errorf("credential scope %q: want eu-west-1/rds-db", c)
	}
	if q.Get("X-Amz-Signature") == "" {
		t.Error("the token is not signed")
	}
}

func TestPasswordRefusesWhatCannotBeSigned(t *testing.T) {
	for _, tc := range []struct{ name, url, region, want string }{
		{"no user", "postgres://db:5432/switchboard", "eu-west-1", "want a user"},
		{"no region", "postgres://app@db:5432/switchboard", "", "AWS_REGION"},
		{"not a url", "postgres://app@db:port/x", "eu-west-1", "parse DATABASE_URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Password(tc.url, tc.region, keys); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v: want one naming %q", err, tc.want)
			}
		})
	}
}
