package edge

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	helmv3 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/helm/v3"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	networkingv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/networking/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/switchboard-dev/switchboard/infra/cluster"
	"github.com/switchboard-dev/switchboard/infra/iampolicy"
	"github.com/switchboard-dev/switchboard/infra/naming"
)

// controllerAccount is the AWS Load Balancer Controller's service account.
const controllerAccount = "aws-load-balancer-controller"

// IdleTimeout is the ALB's idle timeout for a server that pings every
// ping: three pings, so that two lost pings never cut a connection.
func IdleTimeout(ping time.Duration) time.Duration { return 3 * ping }

// ControllerArgs configure the AWS Load Balancer Controller.
type ControllerArgs struct {
	Cluster *cluster.Cluster
	// VpcID and Region: the controller reads neither from the instance
	// metadata, which the nodes' hop limit of 1 keeps from its pod
	// (infra/cluster); without IMDS the controller needs both as flags
	// (AWS Load Balancer Controller installation guide, "Using the Amazon
	// EC2 instance metadata server version 2 (IMDSv2)").
	VpcID        pulumi.StringInput
	Region       string
	ChartVersion string
	Tags         pulumi.StringMap
}

// Controller is the AWS Load Balancer Controller: its IRSA role, the
// upstream IAM policy and its Helm release.
type Controller struct {
	pulumi.ResourceState
	// Release is created once the controller's pods are ready, so its
	// webhooks answer: every Service, pod and Ingress of the stack depends
	// on it, and on destroy the controller outlives them and deletes the ALB
	// with its permissions intact.
	Release *helmv3.Release
}

// NewController declares the controller.
func NewController(ctx *pulumi.Context, name string, args ControllerArgs, opts ...pulumi.ResourceOption) (*Controller, error) {
	c := &Controller{}
	if err := ctx.RegisterComponentResource("switchboard:index:LBController", name, c, opts...); err != nil {
		return nil, err
	}
	parent := pulumi.Parent(c)
	// The policy of the controller the chart installs: upstream's for that
	// version (infra/iampolicy/lbcontroller), so a new chart brings its
	// permissions, and a chart without one is refused.
	policy, _, err := iampolicy.LBControllerPolicy(args.ChartVersion)
	if err != nil {
		return nil, fmt.Errorf("edge %s: %w", name, err)
	}
	role, err := cluster.ServiceAccountRole(ctx, name+"-controller", args.Cluster, "kube-system", controllerAccount, args.Tags, parent)
	if err != nil {
		return nil, err
	}
	rolePolicy, err := iam.NewRolePolicy(ctx, name+"-controller", &iam.RolePolicyArgs{Role: role.ID(), Policy: pulumi.String(policy)}, parent)
	if err != nil {
		return nil, fmt.Errorf("edge %s: controller policy: %w", name, err)
	}
	c.Release, err = helmv3.NewRelease(ctx, name+"-controller", &helmv3.ReleaseArgs{
		Name:           pulumi.String(controllerAccount),
		Chart:          pulumi.String("aws-load-balancer-controller"),
		Version:        pulumi.String(args.ChartVersion),
		Namespace:      pulumi.String("kube-system"),
		RepositoryOpts: &helmv3.RepositoryOptsArgs{Repo: pulumi.String("https://aws.github.io/eks-charts")},
		// The release is ready when the controller's Deployment is.
		SkipAwait: pulumi.Bool(false),
		Values: pulumi.Map{
			"clusterName": args.Cluster.Name,
			"vpcId":       args.VpcID,
			"region":      pulumi.String(args.Region),
			"serviceAccount": pulumi.Map{
				"name":        pulumi.String(controllerAccount),
				"annotations": pulumi.Map{"eks.amazonaws.com/role-arn": role.Arn},
			},
		},
	}, parent, pulumi.Provider(args.Cluster.Provider), pulumi.DependsOn(append(role.Ready(), rolePolicy)))
	if err != nil {
		return nil, fmt.Errorf("edge %s: controller: %w", name, err)
	}
	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{})
}

// ALBArgs configure the AWS edge.
type ALBArgs struct {
	Namespace      pulumi.StringInput
	App            string             // the server's component: the Ingress's name
	Service        pulumi.StringInput // the server's ClusterIP Service
	ServicePort    int
	CertificateARN string
	WAFACLARN      string // optional
	Stickiness     time.Duration
	PingInterval   time.Duration
	// DrainWindow is the workload's drain: the targets' deregistration delay.
	DrainWindow  time.Duration
	LoadBalancer string // the ALB's name (awsname), for the alarms' lookup
	// ClusterName is the EKS cluster's, which the controller tags its
	// resources with.
	ClusterName pulumi.StringInput
}

// ALB is the component: the server's Ingress the controller turns into an
// Application Load Balancer. Give it the Kubernetes provider and a
// dependency on the controller's release.
type ALB struct {
	pulumi.ResourceState
	Hostname pulumi.StringOutput // the ALB's DNS name
	// TargetGroupTags are the tags the controller put on the server pods'
	// target group, known once the ALB is made (they wait for Hostname):
	// the alarms find the target group by them.
	TargetGroupTags pulumi.StringMapOutput
}

// The controller's tracking tags (aws-load-balancer-controller
// pkg/deploy/tracking/provider.go, v2.13.4 to v2.17.1): every AWS resource
// it makes for an Ingress carries the cluster tag (iampolicy.ClusterTag)
// and the stack tag, namespace/ingress for an Ingress in no IngressGroup; a
// target group's resource tag is namespace/ingress-service:port
// (pkg/ingress/model_build_target_group.go, buildTargetGroupResourceID, the
// port as the Ingress backend names it).
const (
	StackTag    = "ingress.k8s.aws/stack"
	ResourceTag = "ingress.k8s.aws/resource"
)

// TargetGroupTags are the tags of the target group the controller makes
// for an Ingress backend service:port in no IngressGroup.
func TargetGroupTags(cluster, namespace, ingress, service string, port int) map[string]string {
	return map[string]string{
		iampolicy.ClusterTag: cluster,
		StackTag:             namespace + "/" + ingress,
		ResourceTag:          fmt.Sprintf("%s/%s-%s:%d", namespace, ingress, service, port),
	}
}

// NewALB declares the AWS edge.
func NewALB(ctx *pulumi.Context, name string, args ALBArgs, opts ...pulumi.ResourceOption) (*ALB, error) {
	a := &ALB{}
	if err := ctx.RegisterComponentResource("switchboard:index:ALB", name, a, opts...); err != nil {
		return nil, err
	}
	annotations, err := ingressAnnotations(args)
	if err != nil {
		return nil, fmt.Errorf("edge %s: %w", name, err)
	}
	ingress, err := networkingv1.NewIngress(ctx, name, &networkingv1.IngressArgs{
		Metadata: &metav1.ObjectMetaArgs{
			Name: pulumi.String(args.App), Namespace: args.Namespace, Labels: naming.Labels(args.App),
			Annotations: pulumi.ToStringMap(annotations),
		},
		Spec: &networkingv1.IngressSpecArgs{
			IngressClassName: pulumi.String("alb"),
			// The listener's rules answer the blocked paths themselves;
			// everything else falls through to the default action, the
			// forward to the chat pods.
			Rules: networkingv1.IngressRuleArray{networkingv1.IngressRuleArgs{
				Http: &networkingv1.HTTPIngressRuleValueArgs{Paths: blockedPaths()},
			}},
			DefaultBackend: &networkingv1.IngressBackendArgs{Service: &networkingv1.IngressServiceBackendArgs{
				Name: args.Service, Port: &networkingv1.ServiceBackendPortArgs{Number: pulumi.Int(args.ServicePort)},
			}},
		},
	}, pulumi.Parent(a))
	if err != nil {
		return nil, fmt.Errorf("edge %s: ingress: %w", name, err)
	}
	a.Hostname = ingress.Status.LoadBalancer().Ingress().Index(pulumi.Int(0)).Hostname().Elem()
	// The controller writes the Ingress's status once it has deployed the
	// whole model, target groups included (controllers/ingress/
	// group_controller.go: buildAndDeployModel, then
	// updateIngressGroupStatus): with the hostname, the target group exists.
	a.TargetGroupTags = pulumi.All(args.ClusterName, ingress.Metadata.Namespace().Elem(), ingress.Metadata.Name().Elem(), args.Service, a.Hostname).
		ApplyT(func(v []any) map[string]string {
			return TargetGroupTags(v[0].(string), v[1].(string), v[2].(string), v[3].(string), args.ServicePort)
		}).(pulumi.StringMapOutput)
	return a, ctx.RegisterResourceOutputs(a, pulumi.Map{"hostname": a.Hostname})
}

// Blocked are the path prefixes the ALB answers 404 for from the internet:
// the metrics, the readiness (for the load balancer and the kubelet only)
// and any debug handler. Each is an Ingress path of pathType Prefix, which
// the controller turns into the path patterns "/p" and "/p/*" of one
// listener rule (model_build_listener_rules.go,
// buildPathPatternsForPrefixPathType). The controller numbers the rules
// of spec.rules from priority 1 and makes the Ingress's defaultBackend the
// listener's default action, which the ALB evaluates after every rule
// (Elastic Load Balancing, "Listener rules for your Application Load
// Balancer": rules are evaluated in priority order, from the lowest value
// to the highest, and the default rule last). The target group's
// health checks do not pass through the listener: the ALB sends them to
// each target's IP and port directly (Elastic Load Balancing, "Health
// checks for Application Load Balancer target groups"), so /ready still
// reaches the pods.
var Blocked = []string{"/metrics", "/ready", "/debug"}

// BlockedAction names the fixed-response action of the blocked paths: an
// Ingress backend whose service is the action's name and whose port is
// use-annotation takes its action from the annotation
// alb.ingress.kubernetes.io/actions.<name> (the controller's ingress
// annotations guide, "actions.${action-name}").
const BlockedAction = "not-found"

// blockedResponse is that action: a 404 from the ALB itself.
const blockedResponse = `{"type":"fixed-response","fixedResponseConfig":{"contentType":"text/plain","statusCode":"404","messageBody":"404 page not found"}}`

func blockedPaths() networkingv1.HTTPIngressPathArray {
	var paths networkingv1.HTTPIngressPathArray
	for _, p := range Blocked {
		paths = append(paths, networkingv1.HTTPIngressPathArgs{
			Path: pulumi.String(p), PathType: pulumi.String("Prefix"),
			Backend: &networkingv1.IngressBackendArgs{Service: &networkingv1.IngressServiceBackendArgs{
				Name: pulumi.String(BlockedAction), Port: &networkingv1.ServiceBackendPortArgs{Name: pulumi.String("use-annotation")},
			}},
		})
	}
	return paths
}

// HealthCheck is the target group's health check of /ready.
type HealthCheck struct {
	Interval, Timeout  int // seconds
	Healthy, Unhealthy int // consecutive checks
}

// ReadyCheck is the chat target group's: a pod leaves within 10 s of
// failing /ready, and /ready answers in milliseconds, well inside 3 s. ELBv2
// wants the timeout below the interval
// (https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateTargetGroup.html);
// left unset, the controller's is 5 s, which an interval of 5 s makes AWS
// refuse.
var ReadyCheck = HealthCheck{Interval: 5, Timeout: 3, Healthy: 2, Unhealthy: 2}

// ingressAnnotations configure the ALB the controller makes of the Ingress.
func ingressAnnotations(args ALBArgs) (map[string]string, error) {
	secs := func(d time.Duration) int { return int(math.Ceil(d.Seconds())) }
	listen, err := json.Marshal([]map[string]int{{"HTTP": 80}, {"HTTPS": 443}})
	if err != nil {
		return nil, err
	}
	tg := []string{
		// Each client returns to its instance while the cookie lasts.
		"stickiness.enabled=true",
		"stickiness.type=lb_cookie",
		fmt.Sprintf("stickiness.lb_cookie.duration_seconds=%d", secs(args.Stickiness)),
		// A draining pod keeps its connections until its drain is over.
		fmt.Sprintf("deregistration_delay.timeout_seconds=%d", secs(args.DrainWindow)),
	}
	an := map[string]string{
		"alb.ingress.kubernetes.io/scheme":                       "internet-facing",
		"alb.ingress.kubernetes.io/target-type":                  "ip",
		"alb.ingress.kubernetes.io/load-balancer-name":           args.LoadBalancer,
		"alb.ingress.kubernetes.io/listen-ports":                 string(listen),
		"alb.ingress.kubernetes.io/ssl-redirect":                 "443",
		"alb.ingress.kubernetes.io/certificate-arn":              args.CertificateARN,
		"alb.ingress.kubernetes.io/ssl-policy":                   "ELBSecurityPolicy-TLS13-1-2-2021-06",
		"alb.ingress.kubernetes.io/target-group-attributes":      strings.Join(tg, ","),
		"alb.ingress.kubernetes.io/load-balancer-attributes":     fmt.Sprintf("idle_timeout.timeout_seconds=%d", secs(IdleTimeout(args.PingInterval))),
		"alb.ingress.kubernetes.io/healthcheck-path":             "/ready",
		"alb.ingress.kubernetes.io/actions." + BlockedAction:     blockedResponse,
		"alb.ingress.kubernetes.io/healthcheck-interval-seconds": strconv.Itoa(ReadyCheck.Interval),
		"alb.ingress.kubernetes.io/healthcheck-timeout-seconds":  strconv.Itoa(ReadyCheck.Timeout),
		"alb.ingress.kubernetes.io/healthy-threshold-count":      strconv.Itoa(ReadyCheck.Healthy),
		"alb.ingress.kubernetes.io/unhealthy-threshold-count":    strconv.Itoa(ReadyCheck.Unhealthy),
	}
	if args.WAFACLARN != "" {
		an["alb.ingress.kubernetes.io/wafv2-acl-arn"] = args.WAFACLARN
	}
	return an, nil
}
