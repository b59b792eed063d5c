package iampolicy

import (
	"strings"
	"testing"
)

// The resource of rds-db:connect is
// arn:aws:rds-db:region:account-id:dbuser:DbiResourceId/db-user-name, with
// the instance's resource id, not its name.
// https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/UsingWithRDS.IAMDBAuth.IAMPolicy.html
func TestDBUserARN(t *testing.T) {
	for _, tc := range []struct{ instance, resourceID, want string }{
		{"arn:aws:rds:eu-west-1:123456789012:db:switchboard-prod", "db-ABCDEFGHIJ", "arn:aws:rds-db:eu-west-1:123456789012:dbuser:db-ABCDEFGHIJ/switchboard_app"},
		{"arn:aws-cn:rds:cn-north-1:123456789012:db:x", "db-Q", "arn:aws-cn:rds-db:cn-north-1:123456789012:dbuser:db-Q/switchboard_app"},
		{"arn:aws:rds:eu-west-1:123456789012:db:switchboard-prod", "switchboard-prod", "DbiResourceId"},
		{"arn:aws:rds:eu-west-1:123456789012:cluster:c", "db-Q", "want arn:"},
		{"arn:aws:mock:::db", "db-Q", "want arn:"},
	} {
		got, err := DBUserARN(tc.instance, tc.resourceID, "switchboard_app")
		if strings.HasPrefix(tc.want, "arn:") {
			if err != nil || got != tc.want {
				t.Errorf("DBUserARN(%s, %s) = %q, %v; want %s", tc.instance, tc.resourceID, got, err, tc.want)
			}
		} else if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("DBUserARN(%s, %s) = %q, %v; want an error naming %q", tc.instance, tc.resourceID, got, err, tc.want)
		}
	}
}
