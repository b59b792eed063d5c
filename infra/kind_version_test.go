package main

import (
	"os"
	"regexp"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/switchboard-dev/switchboard/infra/stackconfig"
)

// minorOf is "1.35" for "v1.35.4", "" for anything else.
func minorOf(version string) string {
	m := regexp.MustCompile(`^v(1\.[0-9]+)\.[0-9]+$`).FindStringSubmatch(version)
	if m == nil {
		return ""
	}
	return m[1]
}

// kind runs the Kubernetes minor prod runs, so that what a kind cluster
// proves (the API versions the stacks apply, admission, the e2e behaviour)
// holds on EKS; a minor bump on one side fails here until the other
// follows. Checked: the release both offline scripts build
// (scripts/k8s-version.sh, the version of k8s.io/kubernetes tools/k8s
// compiles), the kindest/node image users with internet run
// (infra/kind/cluster.yaml), against the default eksVersion and the prod
// stack's.
func TestKindRunsTheProdEKSMinor(t *testing.T) {
	eks := stackconfig.Defaults().AWS.EKSVersion

	var prod struct{ Config map[string]string }
	b, err := os.ReadFile("../Pulumi.prod.yaml")
	if err != nil {
		t.Fatalf("the prod stack: %v", err)
	}
	if err := yaml.Unmarshal(b, &prod); err != nil {
		t.Fatalf("Pulumi.prod.yaml: %v", err)
	}
	if v, ok := prod.Config["switchboard:eksVersion"]; ok && v != eks {
		t.Errorf("Pulumi.prod.yaml eksVersion %q, the default %q: want prod on the default, the minor kind runs", v, eks)
	}

	b, err = os.ReadFile("../scripts/k8s-version.sh")
	if err != nil {
		t.Fatalf("the offline scripts' Kubernetes version: %v", err)
	}
	m := regexp.MustCompile(`(?m)^K8S=(\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("scripts/k8s-version.sh sets no K8S=<version>")
	}
	k8s := string(m[1])
	if got := minorOf(k8s); got != eks {
		t.Errorf("scripts/k8s-version.sh K8S=%s (minor %q): want the prod default EKS minor %s", k8s, got, eks)
	}

	for _, script := range []string{"e2e.sh", "tools.sh"} {
		b, err := os.ReadFile("../scripts/" + script)
		if err != nil {
			t.Fatalf("the offline scripts: %v", err)
		}
		if !regexp.MustCompile(`(?m)^source scripts/k8s-version\.sh\b`).Match(b) || regexp.MustCompile(`(?m)^\s*K8S=`).Match(b) {
			t.Errorf("scripts/%s: want K8S from scripts/k8s-version.sh only, so that the node and the test control plane never differ", script)
		}
	}

	b, err = os.ReadFile("../tools/k8s/go.mod")
	if err != nil {
		t.Fatalf("the module the Kubernetes binaries are built from: %v", err)
	}
	required := ""
	if m := regexp.MustCompile(`(?m)^\s*(?:require\s+)?k8s\.io/kubernetes\s+(\S+)`).FindSubmatch(b); m != nil {
		required = string(m[1])
	}
	if required != k8s {
		t.Errorf("tools/k8s/go.mod requires k8s.io/kubernetes %q: want %s, the version the binaries are stamped with", required, k8s)
	}

	tag := regexp.MustCompile(`^kindest/node:(v[0-9.]+)@`)
	for i, n := range kindCluster(t) {
		m := tag.FindStringSubmatch(n.Image)
		if m == nil {
			t.Errorf("node %d (%s) image %q: want kindest/node:<version>@sha256:<digest>", i, n.Role, n.Image)
			continue
		}
		if got := minorOf(m[1]); got != eks {
			t.Errorf("node %d (%s) runs kindest/node %s (minor %q): want the prod default EKS minor %s, from kind's release notes", i, n.Role, m[1], got, eks)
		}
	}
}
