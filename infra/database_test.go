package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/switchboard-dev/switchboard/app/config"
	"github.com/switchboard-dev/switchboard/infra/dbaccess"
	"github.com/switchboard-dev/switchboard/infra/iampolicy"
	"github.com/switchboard-dev/switchboard/infra/managed"
	"github.com/switchboard-dev/switchboard/infra/naming"
)

// env returns a container's plain environment.
func envOf(container any) map[string]any {
	out := map[string]any{}
	for _, e := range get(container, "env").([]any) {
		out[get(e, "name").(string)] = get(e, "value")
	}
	return out
}

// On AWS the chat server logs in as its own role by IAM token: RDS has IAM
// database authentication on, the pods run as a service account whose IRSA
// role may rds-db:connect as that one database user
// (arn:aws:rds-db:<region>:<account>:dbuser:<DbiResourceId>/<user>), and
// the URL holds no password. Nothing to rotate, nothing to go stale.
// https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/UsingWithRDS.IAMDBAuth.IAMPolicy.html
func TestChatConnectsAsItsOwnRoleByIAMToken(t *testing.T) {
	for _, stackFile := range []string{"prod", "staging"} {
		t.Run(stackFile, func(t *testing.T) {
			cfg := awsConfig()
			if stackFile == "staging" {
				cfg = awsConfig("dbMultiAz", "false", "deletionProtection", "false", "maxReplicas", "4")
			}
			s := mustRun(t, cfg)
			if db := s0(t, s, "rds/instance:Instance"); db["iamDatabaseAuthenticationEnabled"] != true {
				t.Fatalf("iamDatabaseAuthenticationEnabled = %v: RDS ignores IAM tokens without it", db["iamDatabaseAuthenticationEnabled"])
			}
			url, _ := get(s.one(t, "core/v1:Secret", "chat-env"), "stringData.DATABASE_URL").(string)
			want := fmt.Sprintf("postgres://%s@db.mock.rds.amazonaws.com:5432/switchboard?sslmode=require", dbaccess.Role)
			if url != want {
				t.Errorf("DATABASE_URL %q, want %q: the chat role, TLS, no password", url, want)
			}
			pod := get(s.one(t, "apps/v1:Deployment", "chat"), "spec.template.spec")
			env := envOf(get(pod, "containers.0"))
			if env["DATABASE_AUTH"] != config.AuthRDSIAM || env["AWS_REGION"] != "eu-west-1" {
				t.Errorf("DATABASE_AUTH %v, AWS_REGION %v: want %s in eu-west-1", env["DATABASE_AUTH"], env["AWS_REGION"], config.AuthRDSIAM)
			}
			if get(pod, "serviceAccountName") != naming.Chat {
				t.Fatalf("pods run as %v, want %s", get(pod, "serviceAccountName"), naming.Chat)
			}
			sa := get(s.one(t, "core/v1:ServiceAccount", naming.Chat), "metadata.annotations").(map[string]any)
			if sa["eks.amazonaws.com/role-arn"] != "arn:aws:mock:::db-chat" {
				t.Errorf("chat service account annotations %v: want its IRSA role", sa)
			}
			trust := s.named(t, "iam/role:Role", "db-chat")["assumeRolePolicy"].(string)
			if !strings.Contains(trust, `"system:serviceaccount:switchboard:chat"`) {
				t.Errorf("trust %s: want the chat service account only", trust)
			}
			doc := policy(t, s, "db-chat")
			wantARN := fmt.Sprintf("arn:aws:rds-db:eu-west-1:123456789012:dbuser:%s/%s", testDBResourceID, dbaccess.Role)
			if len(doc.Statement) != 1 || fmt.Sprint(doc.Statement[0].Action, doc.Statement[0].Resource) != fmt.Sprintf("[rds-db:connect] [%s]", wantARN) {
				t.Errorf("policy %+v: want rds-db:connect on %s alone", doc.Statement, wantARN)
			}
		})
	}
}

// The master password, which RDS rotates every 7 days, stays in Secrets
// Manager: the program never reads it, no Kubernetes object holds it, and
// the bootstrap Job reads it at run time from the secret, with a role that
// may read that one secret, into a memory volume that ends with the pod.
// The Job runs the role's SQL over TLS; the chat pods wait for it.
func TestMasterPasswordStaysInSecretsManager(t *testing.T) {
	s := mustRun(t, awsConfig())
	for _, r := range s.all("core/v1:Secret") {
		if get(r, "metadata.name") == "grafana-admin" {
			continue // Grafana's own generated password (TestGrafanaAdminPasswordIsGeneratedOnceAndSecret)
		}
		if data := fmt.Sprint(r["stringData"]); strings.Contains(data, "password") {
			t.Errorf("Secret %v holds a password: %v", get(r, "metadata.name"), data)
		}
	}
	secretARN := "arn:aws:secretsmanager:mock:db"
	doc := policy(t, s, "db-bootstrap")
	if len(doc.Statement) != 1 || fmt.Sprint(doc.Statement[0].Action, doc.Statement[0].Resource) != fmt.Sprintf("[secretsmanager:GetSecretValue] [%s]", secretARN) {
		t.Errorf("bootstrap policy %+v: want GetSecretValue on the master secret alone", doc.Statement)
	}
	jobs := s.all("batch/v1:Job")
	if len(jobs) != 1 {
		t.Fatalf("%d Jobs, want the bootstrap", len(jobs))
	}
	pod := get(jobs[0], "spec.template.spec")
	if get(pod, "serviceAccountName") != "db-bootstrap" {
		t.Errorf("bootstrap runs as %v", get(pod, "serviceAccountName"))
	}
	fetch, psql := get(pod, "initContainers.0"), get(pod, "containers.0")
	if envOf(fetch)["MASTER_SECRET_ARN"] != secretARN || !strings.Contains(fmt.Sprint(get(fetch, "command")), "secretsmanager get-secret-value") {
		t.Errorf("init container %v: want it to fetch the master secret", fetch)
	}
	if e := envOf(psql); e["PGSSLMODE"] != "require" || e["APP_ROLE"] != dbaccess.Role || e["PGHOST"] != "db.mock.rds.amazonaws.com" {
		t.Errorf("psql env %v: want TLS to the instance, creating %s", e, dbaccess.Role)
	}
	for _, v := range get(pod, "volumes").([]any) {
		if get(v, "name") == "master" && get(v, "emptyDir.medium") != "Memory" {
			t.Errorf("the master secret lands on %v: want a memory volume", v)
		}
	}
	script := get(s.one(t, "core/v1:ConfigMap", "db-bootstrap"), "data").(map[string]any)
	for _, want := range []string{"GRANT rds_iam TO", "CREATE SCHEMA IF NOT EXISTS"} {
		if !strings.Contains(script["bootstrap.sql"].(string), want) {
			t.Errorf("bootstrap.sql lacks %q", want)
		}
	}
}

func policy(t *testing.T, s *stack, name string) iampolicy.Document {
	t.Helper()
	var doc iampolicy.Document
	if err := json.Unmarshal([]byte(s.named(t, "iam/rolePolicy:RolePolicy", name)["policy"].(string)), &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// Pulumi orders resources only by the inputs and dependencies it is given
// (Pulumi docs, "Resource options: dependsOn"): the bootstrap Job takes its
// role through the service account's annotation, not the role's inline
// policy, so without an explicit edge it could start before IAM has the
// policy that lets it read the master secret, fail AccessDenied and use up
// its backoff; on destroy the policy could go first. The Job depends on
// its policy; the chat pods on theirs (rds-db:connect) and on the Job.
func TestBootstrapJobWaitsForItsPolicy(t *testing.T) {
	s := mustRun(t, awsConfig())
	policy := func(action string) declared {
		p := s.find("iam/rolePolicy:RolePolicy", func(m map[string]any) bool { return strings.Contains(fmt.Sprint(m["policy"]), action) })
		if len(p) != 1 {
			t.Fatalf("%d role policies allow %s, want 1", len(p), action)
		}
		return p[0]
	}
	jobs := s.of("batch/v1:Job")
	if len(jobs) != 1 {
		t.Fatalf("%d Jobs, want the bootstrap Job", len(jobs))
	}
	job, chat := jobs[0], s.find("apps/v1:Deployment", func(m map[string]any) bool { return get(m, "metadata.name") == "chat" })[0]
	for _, tc := range []struct {
		from   declared
		action string
	}{
		{job, "secretsmanager:GetSecretValue"},
		{chat, "rds-db:connect"},
	} {
		p := policy(tc.action)
		if !slices.Contains(tc.from.Deps, p.URN) {
			t.Errorf("%s %s does not depend on the policy allowing %s (its dependencies: %v)", tc.from.Type, tc.from.Name, tc.action, tc.from.Deps)
		}
	}
	if !s.reaches(chat.URN, job.URN) {
		t.Error("the chat pods do not wait for the bootstrap Job")
	}
}

// RDS runs the PostgreSQL major the bootstrap SQL and the store are tested
// on (infra/dbaccess's TestBootstrapIsTestedOnTheMajorRDSRuns checks the
// test server's), with the parameter group of that major's family (RDS
// refuses a group of another family), and the dev stack's in-cluster
// Postgres is of that major too.
func TestRDSRunsTheMajorTheTestsRun(t *testing.T) {
	s := mustRun(t, awsConfig())
	db := s0(t, s, "rds/instance:Instance")
	if db["engine"] != "postgres" || db["engineVersion"] != managed.PostgresMajor {
		t.Errorf("RDS runs %v %v, want postgres %s", db["engine"], db["engineVersion"], managed.PostgresMajor)
	}
	if f := s0(t, s, "rds/parameterGroup:ParameterGroup")["family"]; f != "postgres"+managed.PostgresMajor {
		t.Errorf("parameter group family %v, want postgres%s", f, managed.PostgresMajor)
	}
	dev := mustRun(t, kindConfig())
	image := fmt.Sprint(get(dev.one(t, "apps/v1:StatefulSet", "postgres"), "spec.template.spec.containers.0.image"))
	if !strings.Contains(image, ":"+managed.PostgresMajor) {
		t.Errorf("the dev stack's Postgres is %s, want PostgreSQL %s", image, managed.PostgresMajor)
	}
}
