package eksaddon

import (
	"fmt"
	"strings"
	"testing"
)

// kube-proxy's minor must be the cluster's ("Manage kube-proxy in Amazon
// EKS clusters": the add-on version table lists one kube-proxy per
// Kubernetes version), and every row pins the same add-ons.
func TestEveryRowIsConsistentWithItsMinor(t *testing.T) {
	if len(Minors()) < 3 {
		t.Errorf("minors %v: want at least 1.32 to 1.35", Minors())
	}
	want, _ := For("1.35")
	for _, minor := range Minors() {
		row, err := For(minor)
		if err != nil {
			t.Fatal(err)
		}
		if len(row) != len(want) {
			t.Errorf("EKS %s pins %d add-ons, 1.35 pins %d", minor, len(row), len(want))
		}
		for addon, v := range row {
			if err := Check(minor, addon, v); err != nil {
				t.Errorf("EKS %s: %v", minor, err)
			}
		}
		if !strings.HasPrefix(row["kube-proxy"], "v"+minor+".") {
			t.Errorf("EKS %s: kube-proxy %s", minor, row["kube-proxy"])
		}
	}
}

func TestMismatchesAreRefused(t *testing.T) {
	for _, tc := range []struct{ eks, addon, version string }{
		{"1.33", "kube-proxy", "v1.32.9-eksbuild.2"},
		{"1.35", "kube-proxy", "v1.34.6-eksbuild.13"},
		{"1.33", "coredns", "1.12.4"},
		{"1.33", "vpc-cni", "latest"},
		// Too old to enforce NetworkPolicies.
		{"1.33", "vpc-cni", "v1.13.4-eksbuild.1"},
	} {
		if err := Check(tc.eks, tc.addon, tc.version); err == nil {
			t.Errorf("EKS %s with %s %s accepted", tc.eks, tc.addon, tc.version)
		}
	}
	for _, v := range []string{"1.31", "1.36", "1.35.0", ""} {
		if _, err := For(v); err == nil || !strings.Contains(err.Error(), "1.32, 1.33, 1.34, 1.35") {
			t.Errorf("EKS %q: %v, want a refusal listing the minors", v, err)
		}
	}
}

// Every minor of the table runs NetworkPolicies: EKS 1.25 or later and
// VPC CNI 1.14 or later (Amazon EKS User Guide, "Restrict Pod network
// traffic with Kubernetes network policies").
func TestEveryRowEnforcesNetworkPolicies(t *testing.T) {
	for _, minor := range Minors() {
		var major, m int
		if _, err := fmt.Sscanf(minor, "%d.%d", &major, &m); err != nil || major != 1 || m < MinEKSMinor {
			t.Errorf("EKS %s: want 1.%d or later", minor, MinEKSMinor)
		}
		row, _ := For(minor)
		if err := Check(minor, "vpc-cni", row["vpc-cni"]); err != nil {
			t.Errorf("EKS %s: %v", minor, err)
		}
	}
}
