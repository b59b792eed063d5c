// Package dbaccess gives the chat server on AWS a database role of its own,
// with no password: RDS IAM database authentication. The chat pods' service
// account has an IRSA role allowed rds-db:connect as that role alone; the
// server signs a 15-minute token for each new connection (DATABASE_AUTH=
// rds-iam), so nothing is stored and nothing needs rotating. The master
// password, which RDS rotates, stays in Secrets Manager: a bootstrap Job
// reads it there at each run to create the role (bootstrap.sql).
package dbaccess

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"net/url"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	batchv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/batch/v1"
	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/switchboard-dev/switchboard/infra/cluster"
	"github.com/switchboard-dev/switchboard/infra/iampolicy"
	"github.com/switchboard-dev/switchboard/infra/naming"
)

// The chat server's database role and the schema it owns.
const (
	Role   = "switchboard_app"
	Schema = "chat"
)

// Auth is the chat server's DATABASE_AUTH on AWS (app/config.AuthRDSIAM).
const Auth = "rds-iam"

// bootstrapAccount is the bootstrap Job's service account; the server's
// pods run as Args.Account.
const bootstrapAccount = "db-bootstrap"

// BootstrapComponent is the bootstrap Job pods' app.kubernetes.io/name
// (naming.Labels), which the NetworkPolicies select.
const BootstrapComponent = bootstrapAccount

// Pinned images of the bootstrap Job, from ECR Public (no Docker Hub limits).
// psql is only the client: psql 16 speaks to the PostgreSQL 15 RDS runs
// (infra/managed.PostgresMajor), which the SQL is tested on.
const (
	awsCLIImage = "public.ecr.aws/aws-cli/aws-cli:2.27.49"
	psqlImage   = "public.ecr.aws/docker/library/postgres:16.9-alpine"
)

var (
	//go:embed bootstrap.sql
	bootstrapSQL string
	//go:embed bootstrap.sh
	bootstrapScript string
)

// Args configure the access.
type Args struct {
	Cluster *cluster.Cluster
	// Account is the service account the server's pods run as: its IRSA
	// role may connect as the database role.
	Account string
	// Namespace of the server: its name for the IRSA trust policies,
	// which name it before it exists, and the namespace's own output, which
	// the objects wait for.
	NamespaceName   string
	Namespace       pulumi.StringInput
	DBInstanceARN   pulumi.StringInput // arn:aws:rds:<region>:<account>:db:<identifier>
	DBResourceID    pulumi.StringInput // the instance's DbiResourceId
	DBAddress       pulumi.StringInput
	DBPort          int
	Database        string
	MasterSecretARN pulumi.StringInput // RDS's managed master secret
	Tags            pulumi.StringMap
}

// Access is the component.
type Access struct {
	pulumi.ResourceState
	// ServiceAccount the chat pods run as.
	ServiceAccount pulumi.StringOutput
	// DatabaseURL names the role and the TLS endpoint; it has no password.
	DatabaseURL pulumi.StringOutput
	// Bootstrap completes once the role exists: the chat pods wait for it.
	Bootstrap *batchv1.Job
	// AppPolicy lets the server pods' role connect as the database role:
	// the pods wait for it too, and lose it only once they are gone.
	AppPolicy *iam.RolePolicy
}

// New declares the role's access. opts carry the Kubernetes provider.
func New(ctx *pulumi.Context, name string, args Args, opts ...pulumi.ResourceOption) (*Access, error) {
	a := &Access{}
	if err := ctx.RegisterComponentResource("switchboard:index:DBAccess", name, a, opts...); err != nil {
		return nil, err
	}
	parent := pulumi.Parent(a)
	meta := func(n string, annotations pulumi.StringMapInput) *metav1.ObjectMetaArgs {
		return &metav1.ObjectMetaArgs{Name: pulumi.String(n), Namespace: args.Namespace, Labels: naming.Labels(n), Annotations: annotations}
	}

	connect := pulumi.All(args.DBInstanceARN, args.DBResourceID).ApplyT(func(v []any) (string, error) {
		arn, err := iampolicy.DBUserARN(v[0].(string), v[1].(string), Role)
		if err != nil {
			return "", err
		}
		return iampolicy.RDSConnect(arn).JSON()
	}).(pulumi.StringOutput)
	appRole, appPolicy, err := irsa(ctx, name+"-"+args.Account, args, args.Account, connect, parent)
	if err != nil {
		return nil, err
	}
	appAccount, err := corev1.NewServiceAccount(ctx, name+"-"+args.Account, &corev1.ServiceAccountArgs{
		Metadata: meta(args.Account, pulumi.StringMap{"eks.amazonaws.com/role-arn": appRole.Arn}),
	}, parent)
	if err != nil {
		return nil, fmt.Errorf("dbaccess %s: %s service account: %w", name, args.Account, err)
	}

	readMaster := args.MasterSecretARN.ToStringOutput().ApplyT(func(arn string) (string, error) {
		return iampolicy.ReadSecret(arn).JSON()
	}).(pulumi.StringOutput)
	bootRole, bootPolicy, err := irsa(ctx, name+"-bootstrap", args, bootstrapAccount, readMaster, parent)
	if err != nil {
		return nil, err
	}
	bootAccount, err := corev1.NewServiceAccount(ctx, name+"-bootstrap", &corev1.ServiceAccountArgs{
		Metadata: meta(bootstrapAccount, pulumi.StringMap{"eks.amazonaws.com/role-arn": bootRole.Arn}),
	}, parent)
	if err != nil {
		return nil, fmt.Errorf("dbaccess %s: bootstrap service account: %w", name, err)
	}
	script, err := corev1.NewConfigMap(ctx, name+"-bootstrap", &corev1.ConfigMapArgs{
		Metadata: meta(bootstrapAccount, nil),
		Data:     pulumi.StringMap{"bootstrap.sql": pulumi.String(bootstrapSQL), "bootstrap.sh": pulumi.String(bootstrapScript)},
	}, parent)
	if err != nil {
		return nil, fmt.Errorf("dbaccess %s: bootstrap script: %w", name, err)
	}
	a.Bootstrap, err = batchv1.NewJob(ctx, name+"-bootstrap", &batchv1.JobArgs{
		// No name: a changed script replaces the Job (its template is
		// immutable), and the new one runs.
		Metadata: &metav1.ObjectMetaArgs{Namespace: args.Namespace, Labels: naming.Labels(bootstrapAccount)},
		Spec: &batchv1.JobSpecArgs{
			BackoffLimit:          pulumi.Int(6),
			ActiveDeadlineSeconds: pulumi.Int(900),
			Template: &corev1.PodTemplateSpecArgs{
				Metadata: &metav1.ObjectMetaArgs{
					Labels:      naming.Labels(bootstrapAccount),
					Annotations: pulumi.StringMap{"switchboard.dev/script-sha256": pulumi.String(checksum(bootstrapSQL + bootstrapScript))},
				},
				Spec: bootstrapPod(args, bootAccount.Metadata.Name().Elem(), script.Metadata.Name().Elem()),
			},
		},
	},
		// The Job reads the master secret through its role's policy: it
		// starts once IAM has the policy (else its first runs fail
		// AccessDenied and use up the backoff), and on destroy the policy
		// goes after it.
		parent, pulumi.DependsOn([]pulumi.Resource{bootAccount, script, bootPolicy}))
	if err != nil {
		return nil, fmt.Errorf("dbaccess %s: bootstrap job: %w", name, err)
	}

	a.AppPolicy = appPolicy
	a.ServiceAccount = appAccount.Metadata.Name().Elem()
	a.DatabaseURL = args.DBAddress.ToStringOutput().ApplyT(func(host string) string {
		u := url.URL{Scheme: "postgres", User: url.User(Role), Host: fmt.Sprintf("%s:%d", host, args.DBPort), Path: "/" + args.Database, RawQuery: "sslmode=require"}
		return u.String()
	}).(pulumi.StringOutput)
	return a, ctx.RegisterResourceOutputs(a, pulumi.Map{"serviceAccount": a.ServiceAccount, "databaseUrl": a.DatabaseURL})
}

// irsa is a role that only the service account may assume, with one
// inline policy, which what acts through the role must depend on.
func irsa(ctx *pulumi.Context, name string, args Args, account string, policy pulumi.StringInput, parent pulumi.ResourceOption) (*iam.Role, *iam.RolePolicy, error) {
	role, err := cluster.ServiceAccountRole(ctx, name, args.Cluster, args.NamespaceName, account, args.Tags, parent)
	if err != nil {
		return nil, nil, err
	}
	p, err := iam.NewRolePolicy(ctx, name, &iam.RolePolicyArgs{Role: role.ID(), Policy: policy}, parent)
	if err != nil {
		return nil, nil, fmt.Errorf("dbaccess %s: policy: %w", name, err)
	}
	return role.Role, p, nil
}

// bootstrapPod: an init container fetches the master secret into a memory
// volume; psql then applies bootstrap.sql as the master user, over TLS.
func bootstrapPod(args Args, account, script pulumi.StringInput) *corev1.PodSpecArgs {
	const creds, scripts = "/run/master", "/opt/bootstrap"
	env := func(kv ...string) corev1.EnvVarArray {
		var out corev1.EnvVarArray
		for i := 0; i+1 < len(kv); i += 2 {
			out = append(out, corev1.EnvVarArgs{Name: pulumi.String(kv[i]), Value: pulumi.String(kv[i+1])})
		}
		return out
	}
	locked := &corev1.SecurityContextArgs{
		RunAsNonRoot: pulumi.Bool(true), RunAsUser: pulumi.Int(65532), RunAsGroup: pulumi.Int(65532),
		AllowPrivilegeEscalation: pulumi.Bool(false), ReadOnlyRootFilesystem: pulumi.Bool(true),
		Capabilities: &corev1.CapabilitiesArgs{Drop: pulumi.StringArray{pulumi.String("ALL")}},
	}
	mount := func(name, path string) corev1.VolumeMountArgs {
		return corev1.VolumeMountArgs{Name: pulumi.String(name), MountPath: pulumi.String(path)}
	}
	fetch := corev1.EnvVarArgs{Name: pulumi.String("MASTER_SECRET_ARN"), Value: args.MasterSecretARN.ToStringOutput().ToStringPtrOutput()}
	return &corev1.PodSpecArgs{
		ServiceAccountName: account.ToStringOutput().ToStringPtrOutput(),
		RestartPolicy:      pulumi.String("OnFailure"),
		SecurityContext:    &corev1.PodSecurityContextArgs{FsGroup: pulumi.Int(65532), SeccompProfile: &corev1.SeccompProfileArgs{Type: pulumi.String("RuntimeDefault")}},
		InitContainers: corev1.ContainerArray{corev1.ContainerArgs{
			Name:            pulumi.String("master-secret"),
			Image:           pulumi.String(awsCLIImage),
			Command:         pulumi.ToStringArray([]string{"/bin/sh", "-c", `aws secretsmanager get-secret-value --secret-id "$MASTER_SECRET_ARN" --query SecretString --output text > ` + creds + `/secret.json`}),
			Env:             append(env("HOME", "/tmp"), fetch),
			VolumeMounts:    corev1.VolumeMountArray{mount("master", creds), mount("tmp", "/tmp")},
			SecurityContext: locked,
		}},
		Containers: corev1.ContainerArray{corev1.ContainerArgs{
			Name:    pulumi.String("psql"),
			Image:   pulumi.String(psqlImage),
			Command: pulumi.ToStringArray([]string{"/bin/sh", scripts + "/bootstrap.sh"}),
			Env: append(env(
				"CREDENTIALS", creds+"/secret.json", "SQL", scripts+"/bootstrap.sql",
				"APP_ROLE", Role, "APP_SCHEMA", Schema,
				"PGDATABASE", args.Database, "PGPORT", fmt.Sprint(args.DBPort), "PGSSLMODE", "require", "PGCONNECT_TIMEOUT", "10",
			), corev1.EnvVarArgs{Name: pulumi.String("PGHOST"), Value: args.DBAddress.ToStringOutput().ToStringPtrOutput()}),
			VolumeMounts:    corev1.VolumeMountArray{mount("master", creds), mount("scripts", scripts)},
			SecurityContext: locked,
		}},
		Volumes: corev1.VolumeArray{
			corev1.VolumeArgs{Name: pulumi.String("master"), EmptyDir: &corev1.EmptyDirVolumeSourceArgs{Medium: pulumi.String("Memory"), SizeLimit: pulumi.String("1Mi")}},
			corev1.VolumeArgs{Name: pulumi.String("tmp"), EmptyDir: &corev1.EmptyDirVolumeSourceArgs{Medium: pulumi.String("Memory"), SizeLimit: pulumi.String("64Mi")}},
			corev1.VolumeArgs{Name: pulumi.String("scripts"), ConfigMap: &corev1.ConfigMapVolumeSourceArgs{Name: script.ToStringOutput().ToStringPtrOutput()}},
		},
	}
}

func checksum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
