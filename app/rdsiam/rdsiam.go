// Package rdsiam makes the chat server's database password on AWS: an RDS
// IAM authentication token, signed for each new connection with the AWS
// credentials of the environment (the pod's IRSA role). There is no password
// to store or rotate; a token is valid for 15 minutes and is checked only
// when a connection opens.
// https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/UsingWithRDS.IAMDBAuth.html
package rdsiam

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/rds/auth"
)

// Password signs a token for the user and host:port of databaseURL, in
// region, with credentials; call it once per connection.
func Password(databaseURL, region string, credentials aws.CredentialsProvider) (func(context.Context) (string, error), error) {
	u, err := url.Parse(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("rds iam: parse DATABASE_URL: %w", err)
	}
	user := u.User.Username()
	if user == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("rds iam: DATABASE_URL %s: want a user and a host", u.Redacted())
	}
	if region == "" {
		return nil, errors.New("rds iam: no AWS region: set AWS_REGION (the EKS pod identity webhook does, with IRSA)")
	}
	port := u.Port()
	if port == "" {
		port = "5432"
	}
	endpoint := net.JoinHostPort(u.Hostname(), port)
	return func(ctx context.Context) (string, error) {
		token, err := auth.BuildAuthToken(ctx, endpoint, region, user, credentials)
		if err != nil {
			return "", fmt.Errorf("rds iam: sign a token for %s@%s: %w", user, endpoint, err)
		}
		return token, nil
	}, nil
}

// FromEnvironment is Password with the region and credentials of the
// default chain: AWS_REGION, then IRSA's AWS_ROLE_ARN and
// AWS_WEB_IDENTITY_TOKEN_FILE in a pod, or a profile or keys elsewhere.
// Credentials are cached and refreshed before they expire.
func FromEnvironment(ctx context.Context, databaseURL string) (func(context.Context) (string, error), error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("rds iam: AWS configuration: %w", err)
	}
	return Password(databaseURL, cfg.Region, cfg.Credentials)
}
