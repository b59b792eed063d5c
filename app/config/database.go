package config

import (
	"net/url"
)

// DATABASE_AUTH values: how the chat server proves itself to Postgres.
const (
	// AuthPassword: the password in DATABASE_URL.
	AuthPassword = "password"
	// AuthRDSIAM: an RDS IAM authentication token, signed with the AWS
	// credentials of the environment (a pod's IRSA role) for each new
	// connection; DATABASE_URL names the user and carries no password.
	AuthRDSIAM = "rds-iam"
)

// databaseAuth reads DATABASE_AUTH, after DATABASE_URL.
func (r *reader) databaseAuth(c *Config) {
	r.str("DATABASE_AUTH", &c.DatabaseAuth, AuthPassword+" or "+AuthRDSIAM, oneOf(AuthPassword, AuthRDSIAM))
	if c.DatabaseAuth != AuthRDSIAM {
		return
	}
	u, err := url.Parse(c.DatabaseURL)
	if err != nil {
		return // reported as DATABASE_URL's own error
	}
	// RDS accepts IAM tokens over SSL only.
	// https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/UsingWithRDS.IAMDBAuth.Connecting.html
	switch mode := u.Query().Get("sslmode"); {
	case u.User.Username() == "":
		r.fail("DATABASE_URL", u.Redacted(), "a user (the database role with rds_iam) when DATABASE_AUTH=rds-iam")
	case mode != "require" && mode != "verify-ca" && mode != "verify-full":
		r.fail("DATABASE_URL", u.Redacted(), "sslmode=require, verify-ca or verify-full when DATABASE_AUTH=rds-iam: RDS takes IAM tokens over SSL only")
	}
}
