package iampolicy

import (
	"fmt"
	"strings"
)

// DBUserARN is the resource of rds-db:connect for user on a DB instance:
// arn:<partition>:rds-db:<region>:<account>:dbuser:<DbiResourceId>/<user>,
// with the partition, region and account of the instance's ARN
// (arn:<partition>:rds:<region>:<account>:db:<identifier>).
// https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/UsingWithRDS.IAMDBAuth.IAMPolicy.html
func DBUserARN(instanceARN, resourceID, user string) (string, error) {
	p := strings.Split(instanceARN, ":")
	if len(p) != 7 || p[0] != "arn" || p[2] != "rds" || p[5] != "db" || p[3] == "" || p[4] == "" {
		return "", fmt.Errorf("DB instance ARN %q: want arn:<partition>:rds:<region>:<account>:db:<identifier>", instanceARN)
	}
	if !strings.HasPrefix(resourceID, "db-") {
		return "", fmt.Errorf("DB resource id %q: want the instance's DbiResourceId, db-…", resourceID)
	}
	return fmt.Sprintf("arn:%s:rds-db:%s:%s:dbuser:%s/%s", p[1], p[3], p[4], resourceID, user), nil
}

// RDSConnect lets a role log in as one database user by IAM token.
func RDSConnect(dbUserARN string) Document {
	return New(Statement{Sid: "ConnectAsTheChatRole", Effect: "Allow", Action: []string{"rds-db:connect"}, Resource: []string{dbUserARN}})
}

// ReadSecret lets a role read one Secrets Manager secret's value.
func ReadSecret(secretARN string) Document {
	return New(Statement{Sid: "ReadOneSecret", Effect: "Allow", Action: []string{"secretsmanager:GetSecretValue"}, Resource: []string{secretARN}})
}
