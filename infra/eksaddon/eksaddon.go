// Package eksaddon is the table of the EKS add-on versions the stacks pin,
// one row per Kubernetes minor, so that each add-on stays consistent with
// the cluster's eksVersion (kube-proxy's minor must be the cluster's).
package eksaddon

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// versions are the EKS add-on type's versions per cluster minor, from the
// Amazon EKS User Guide's version tables: "Manage kube-proxy in Amazon EKS
// clusters" (managing-kube-proxy.html), "Manage CoreDNS for DNS in Amazon
// EKS clusters" (managing-coredns.html) and "Assign IPs to Pods with the
// Amazon VPC CNI" (managing-vpc-cni.html). AWS publishes no per-minor table
// for the EBS CSI driver: its version is one `aws eks
// describe-addon-versions` lists for each of these minors. Adding a minor is
// adding a row from those pages, and its dates to the calendar
// (lifecycle.go); a minor past its end of extended support has no row (1.31
// ended on 2026-11-26), the calendar still refuses it with its date.
//
// 1.34 and 1.35 (read 2026-12-06): kube-proxy v1.34.6-eksbuild.13 and
// v1.35.3-eksbuild.13, CoreDNS v1.13.2-eksbuild.7 and v1.14.2-eksbuild.4,
// the pages' latest for each minor; the VPC CNI table lists
// v1.21.1-eksbuild.8 for every minor from 1.29 to 1.35. The EBS CSI driver
// v1.56.0 (2026-02-21, kubernetes-sigs/aws-ebs-csi-driver CHANGELOG) was
// released after EKS 1.35: check `aws eks describe-addon-versions
// --addon-name aws-ebs-csi-driver --kubernetes-version 1.35` lists its
// eksbuild before the first `pulumi up` (addon-aws-ebs-csi-driver
// overrides it).
var versions = map[string]map[string]string{
	"1.32": {
		"vpc-cni": "v1.20.1-eksbuild.3", "coredns": "v1.11.4-eksbuild.24", "kube-proxy": "v1.32.9-eksbuild.2",
		"aws-ebs-csi-driver": "v1.45.0-eksbuild.2",
	},
	"1.33": {
		"vpc-cni": "v1.20.1-eksbuild.3", "coredns": "v1.12.4-eksbuild.1", "kube-proxy": "v1.33.5-eksbuild.2",
		"aws-ebs-csi-driver": "v1.45.0-eksbuild.2",
	},
	"1.34": {
		"vpc-cni": "v1.21.1-eksbuild.8", "coredns": "v1.13.2-eksbuild.7", "kube-proxy": "v1.34.6-eksbuild.13",
		"aws-ebs-csi-driver": "v1.56.0-eksbuild.1",
	},
	"1.35": {
		"vpc-cni": "v1.21.1-eksbuild.8", "coredns": "v1.14.2-eksbuild.4", "kube-proxy": "v1.35.3-eksbuild.13",
		"aws-ebs-csi-driver": "v1.56.0-eksbuild.1",
	},
}

// Minors are the cluster versions the table has a row for, oldest first.
func Minors() []string {
	m := slices.Collect(maps.Keys(versions))
	slices.SortFunc(m, compareMinors)
	return m
}

// For is a copy of the row of eksVersion ("1.35").
func For(eksVersion string) (map[string]string, error) {
	row, ok := versions[eksVersion]
	if !ok {
		return nil, fmt.Errorf("no add-on versions for EKS %q: want one of %s", eksVersion, strings.Join(Minors(), ", "))
	}
	return maps.Clone(row), nil
}

// version is an EKS add-on version: vMAJOR.MINOR.PATCH-eksbuild.N.
var version = regexp.MustCompile(`^v(\d+)\.(\d+)\.\d+-eksbuild\.\d+$`)

// Check refuses a version that is not an EKS add-on version, a
// kube-proxy whose minor is not the cluster's, and a VPC CNI too old to
// enforce NetworkPolicies (1.14, Amazon EKS User Guide, "Restrict Pod
// network traffic with Kubernetes network policies").
func Check(eksVersion, addon, v string) error {
	m := version.FindStringSubmatch(v)
	if m == nil {
		return fmt.Errorf("add-on %s %q: want vX.Y.Z-eksbuild.N", addon, v)
	}
	if addon == "kube-proxy" && m[1]+"."+m[2] != eksVersion {
		return fmt.Errorf("add-on kube-proxy %q: want the minor of eksVersion, v%s.x-eksbuild.N", v, eksVersion)
	}
	if addon == "vpc-cni" {
		major, _ := strconv.Atoi(m[1])
		minor, _ := strconv.Atoi(m[2])
		if major < 1 || (major == 1 && minor < MinVPCCNIMinor) {
			return fmt.Errorf("add-on vpc-cni %q: want v1.%d or later, which enforces NetworkPolicies", v, MinVPCCNIMinor)
		}
	}
	return nil
}

// Network policies need VPC CNI 1.14 and EKS 1.25 or later.
const (
	MinVPCCNIMinor = 14
	MinEKSMinor    = 25
)
