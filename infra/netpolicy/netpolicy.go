// Package netpolicy is the app namespace's NetworkPolicies, the same on
// every target: a default deny of ingress and egress for every pod of the
// namespace, then one policy per component allowing only the flows it
// needs. What differs between kind and AWS is where the peers are (the
// stores' pods or their subnets, NGINX's pods or the ALB's subnets): the
// stacks pass those in Args, and Flows derives the one table of allowed
// flows that New declares, the tests check and docs/abuse.md shows.
//
// NetworkPolicies are enforced only by a network plugin that implements
// them (Kubernetes docs, "Network Policies": "Posting NetworkPolicy to the
// API server for a cluster without such a plugin will have no effect").
// On EKS that is the VPC CNI with its network policy agent (infra/cluster
// enables it); on kind, see infra/kindnode.
package netpolicy

import (
	"fmt"
	"slices"
	"strings"

	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	networkingv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/networking/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/switchboard-dev/switchboard/infra/naming"
)

// DefaultDeny is the name of the policy that selects every pod of the
// namespace and allows nothing.
const DefaultDeny = "default-deny"

// Peer is one end of a flow: pods of the namespace (Component), pods of
// another namespace (Namespace, narrowed by Pods), addresses (CIDRs less
// Except), or, with nothing set, anywhere.
type Peer struct {
	Component string            // the pods labelled naming.Selector(Component), in the namespace
	Namespace string            // every pod of this namespace
	Pods      map[string]string // with Namespace: only the pods with these labels
	CIDRs     []string          // ipBlocks
	Except    []string          // cut out of every CIDR
}

// Anywhere is every source or destination.
var Anywhere = Peer{}

// DNS is the cluster's DNS: CoreDNS in kube-system, which kubeadm (kind)
// and the EKS coredns add-on both label k8s-app=kube-dns.
var DNS = Peer{Namespace: "kube-system", Pods: map[string]string{"k8s-app": "kube-dns"}}

// Local says whether the peer is pods of the app namespace.
func (p Peer) Local() bool { return p.Component != "" }

func (p Peer) String() string {
	switch {
	case p.Component != "":
		return p.Component + " pods"
	case p.Namespace != "" && len(p.Pods) > 0:
		var kv []string
		for k, v := range p.Pods {
			kv = append(kv, k+"="+v)
		}
		slices.Sort(kv)
		return fmt.Sprintf("pods %s in %s", strings.Join(kv, ","), p.Namespace)
	case p.Namespace != "":
		return "namespace " + p.Namespace
	case len(p.CIDRs) > 0 && len(p.Except) > 0:
		return strings.Join(p.CIDRs, ", ") + " except " + strings.Join(p.Except, ", ")
	case len(p.CIDRs) > 0:
		return strings.Join(p.CIDRs, ", ")
	}
	return "anywhere"
}

// Port is a protocol and port number.
type Port struct {
	Protocol string // TCP or UDP
	Number   int
}

// TCP and UDP name a port.
func TCP(n int) Port { return Port{"TCP", n} }
func UDP(n int) Port { return Port{"UDP", n} }

func (p Port) String() string { return fmt.Sprintf("%s %d", p.Protocol, p.Number) }

// Flow is one allowed connection: From may open it to To on Ports.
type Flow struct {
	From, To Peer
	Ports    []Port
	Why      string
}

// Store is where a data store is and its port.
type Store struct {
	At   Peer // its pods (kind) or its subnets (AWS)
	Port int
	// Cluster is set for a store of several pods of the namespace that
	// form a cluster (Redis Cluster on kind).
	Cluster *StoreCluster
}

// StoreCluster are the flows within a store's cluster: its pods reach each
// other on the store's port (replication) and on Bus, and resolve each
// other's names; Setup is the component of the Job that joins them, which
// reaches each on the store's port.
type StoreCluster struct {
	Bus   int
	Setup string
}

// Edge is a load balancer that runs as pods of the namespace (NGINX on kind).
type Edge struct {
	Component string
	Port      int // the port its pods listen on
}

// Args are a target's peers.
type Args struct {
	Namespace pulumi.StringInput
	// App is the server's component (naming.Selector); AppPort serves
	// clients, the health checks and /metrics.
	App     string
	AppPort int
	// Edge is the load balancer when it runs in the namespace (kind); nil
	// when it is outside the cluster.
	Edge *Edge
	// LoadBalancer are the addresses an outside load balancer reaches the
	// server's pods from (AWS: the ALB's subnets); empty with Edge.
	LoadBalancer []Peer
	// Prometheus scrapes the server's pods: the namespace it runs in.
	Prometheus Peer
	// Redis and Postgres: where the server's pods reach the stores; nil
	// without one.
	Redis, Postgres *Store
	// Bootstrap is the component of the database bootstrap Job (AWS), which
	// reaches Postgres and the cloud APIs; "" when there is none.
	Bootstrap string
	// CloudAPIs are where the AWS APIs answer (HTTPS): STS, where the chat
	// pods exchange their service account token for IRSA credentials, and
	// Secrets Manager for Bootstrap. Empty on kind.
	CloudAPIs []Peer
}

// Flows are every flow the policies allow, in a stable order.
func Flows(a Args) []Flow {
	app := Peer{Component: a.App}
	dns := []Port{UDP(53), TCP(53)}
	https := []Port{TCP(443)}
	var f []Flow
	if a.Edge != nil {
		edge := Peer{Component: a.Edge.Component}
		f = append(f,
			Flow{Anywhere, edge, []Port{TCP(a.Edge.Port)}, "clients, through the node port"},
			Flow{edge, app, []Port{TCP(a.AppPort)}, "the proxied connections"},
			Flow{edge, DNS, dns, "NGINX re-resolves the chat pods"},
		)
	}
	for _, lb := range a.LoadBalancer {
		f = append(f, Flow{lb, app, []Port{TCP(a.AppPort)}, "the load balancer's connections and health checks"})
	}
	f = append(f, Flow{a.Prometheus, app, []Port{TCP(a.AppPort)}, "Prometheus scrapes /metrics"})
	if a.Redis != nil {
		f = append(f, Flow{app, a.Redis.At, []Port{TCP(a.Redis.Port)}, "Redis"})
		if c := a.Redis.Cluster; c != nil {
			setup := Peer{Component: c.Setup}
			f = append(f,
				Flow{a.Redis.At, a.Redis.At, []Port{TCP(a.Redis.Port), TCP(c.Bus)}, "Redis Cluster: replication and the cluster bus"},
				Flow{a.Redis.At, DNS, dns, "a restarted node finds its peers' addresses by name"},
				Flow{setup, a.Redis.At, []Port{TCP(a.Redis.Port)}, "creates the cluster"},
				Flow{setup, DNS, dns, "the nodes' names"},
			)
		}
	}
	if a.Postgres != nil {
		f = append(f, Flow{app, a.Postgres.At, []Port{TCP(a.Postgres.Port)}, "Postgres"})
	}
	if a.Redis != nil || a.Postgres != nil {
		f = append(f, Flow{app, DNS, dns, "the stores' names"})
	}
	for _, api := range a.CloudAPIs {
		f = append(f, Flow{app, api, https, "STS: IRSA credentials, which sign the RDS IAM tokens"})
	}
	if a.Bootstrap != "" && a.Postgres != nil {
		job := Peer{Component: a.Bootstrap}
		f = append(f,
			Flow{job, a.Postgres.At, []Port{TCP(a.Postgres.Port)}, "creates the chat server's role"},
			Flow{job, DNS, dns, "the database's and the APIs' names"},
		)
		for _, api := range a.CloudAPIs {
			f = append(f, Flow{job, api, https, "STS (IRSA) and Secrets Manager: the master secret"})
		}
	}
	return f
}

// Policies is the component.
type Policies struct {
	pulumi.ResourceState
	// Names of the policies, the default deny last.
	Names []string
}

// New declares the default deny and one policy per component of the
// namespace that Flows names. Give it the Kubernetes provider.
func New(ctx *pulumi.Context, name string, args Args, opts ...pulumi.ResourceOption) (*Policies, error) {
	if args.App == "" || args.AppPort == 0 || (args.Edge == nil) == (len(args.LoadBalancer) == 0) {
		return nil, fmt.Errorf("netpolicy %s: want the server's component and port and either an edge in the namespace or a load balancer's addresses", name)
	}
	p := &Policies{}
	if err := ctx.RegisterComponentResource("switchboard:index:NetworkPolicies", name, p, opts...); err != nil {
		return nil, err
	}
	flows := Flows(args)
	var allows []pulumi.Resource
	for _, component := range Components(flows) {
		var ingress networkingv1.NetworkPolicyIngressRuleArray
		var egress networkingv1.NetworkPolicyEgressRuleArray
		for _, f := range flows {
			// A rule without from (to) admits every source (destination).
			if f.To.Component == component {
				rule := networkingv1.NetworkPolicyIngressRuleArgs{Ports: ports(f.Ports)}
				if from := peers(f.From); from != nil {
					rule.From = from
				}
				ingress = append(ingress, rule)
			}
			if f.From.Component == component {
				rule := networkingv1.NetworkPolicyEgressRuleArgs{Ports: ports(f.Ports)}
				if to := peers(f.To); to != nil {
					rule.To = to
				}
				egress = append(egress, rule)
			}
		}
		np, err := networkingv1.NewNetworkPolicy(ctx, name+"-"+component, &networkingv1.NetworkPolicyArgs{
			Metadata: meta(component, args.Namespace),
			Spec: &networkingv1.NetworkPolicySpecArgs{
				PodSelector: &metav1.LabelSelectorArgs{MatchLabels: naming.Selector(component)},
				// Both types, so that a component without one kind of
				// flow is isolated for it even without the default deny.
				PolicyTypes: pulumi.ToStringArray([]string{"Ingress", "Egress"}),
				Ingress:     ingress,
				Egress:      egress,
			},
		}, pulumi.Parent(p))
		if err != nil {
			return nil, fmt.Errorf("netpolicy %s: %s: %w", name, component, err)
		}
		allows = append(allows, np)
		p.Names = append(p.Names, component)
	}
	// The deny comes after the allows, and goes before them on destroy: a
	// running pod is never left with the deny alone.
	if _, err := networkingv1.NewNetworkPolicy(ctx, name+"-"+DefaultDeny, &networkingv1.NetworkPolicyArgs{
		Metadata: meta(DefaultDeny, args.Namespace),
		Spec: &networkingv1.NetworkPolicySpecArgs{
			PodSelector: &metav1.LabelSelectorArgs{}, // every pod of the namespace
			PolicyTypes: pulumi.ToStringArray([]string{"Ingress", "Egress"}),
		},
	}, pulumi.Parent(p), pulumi.DependsOn(allows)); err != nil {
		return nil, fmt.Errorf("netpolicy %s: default deny: %w", name, err)
	}
	p.Names = append(p.Names, DefaultDeny)
	return p, ctx.RegisterResourceOutputs(p, pulumi.Map{})
}

// Components are the namespace's components the flows name, in order.
func Components(flows []Flow) []string {
	var out []string
	for _, f := range flows {
		for _, p := range []Peer{f.From, f.To} {
			if p.Local() && !slices.Contains(out, p.Component) {
				out = append(out, p.Component)
			}
		}
	}
	return out
}

func meta(name string, namespace pulumi.StringInput) *metav1.ObjectMetaArgs {
	return &metav1.ObjectMetaArgs{Name: pulumi.String(name), Namespace: namespace, Labels: naming.Labels(naming.Project)}
}

// peers is a rule's from or to; nil (every address) for Anywhere.
func peers(p Peer) networkingv1.NetworkPolicyPeerArray {
	switch {
	case p.Component != "":
		return networkingv1.NetworkPolicyPeerArray{networkingv1.NetworkPolicyPeerArgs{
			PodSelector: &metav1.LabelSelectorArgs{MatchLabels: naming.Selector(p.Component)},
		}}
	case p.Namespace != "":
		peer := networkingv1.NetworkPolicyPeerArgs{
			// Kubernetes sets this label on every namespace to its name.
			NamespaceSelector: &metav1.LabelSelectorArgs{MatchLabels: pulumi.StringMap{"kubernetes.io/metadata.name": pulumi.String(p.Namespace)}},
		}
		if len(p.Pods) > 0 {
			peer.PodSelector = &metav1.LabelSelectorArgs{MatchLabels: pulumi.ToStringMap(p.Pods)}
		}
		return networkingv1.NetworkPolicyPeerArray{peer}
	case len(p.CIDRs) > 0:
		var out networkingv1.NetworkPolicyPeerArray
		for _, c := range p.CIDRs {
			block := &networkingv1.IPBlockArgs{Cidr: pulumi.String(c)}
			if len(p.Except) > 0 {
				block.Except = pulumi.ToStringArray(p.Except)
			}
			out = append(out, networkingv1.NetworkPolicyPeerArgs{IpBlock: block})
		}
		return out
	}
	return nil
}

func ports(ps []Port) networkingv1.NetworkPolicyPortArray {
	var out networkingv1.NetworkPolicyPortArray
	for _, p := range ps {
		out = append(out, networkingv1.NetworkPolicyPortArgs{Protocol: pulumi.String(p.Protocol), Port: pulumi.Int(p.Number)})
	}
	return out
}
