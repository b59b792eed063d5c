package iampolicy

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// ClusterTag is the tag the AWS Load Balancer Controller puts on every load
// balancer, target group and security group it creates. Its policy lets it
// change and delete only what carries the tag, never the account's others.
const ClusterTag = "elbv2.k8s.aws/cluster"

// The controller's IAM policy is upstream's, as published for each release
// in kubernetes-sigs/aws-load-balancer-controller at
// docs/install/iam_policy.json (Apache-2.0; lbcontroller/README.md), kept
// byte for byte under lbcontroller/, one file per distinct document.
//
//go:embed lbcontroller/*.json
var lbPolicies embed.FS

// LBChart is one aws-load-balancer-controller chart version the stack
// accepts: the controller it installs (the chart's appVersion) and the
// upstream policy of that controller.
type LBChart struct {
	AppVersion string
	Policy     string // file under lbcontroller/
	// SHA256 is that of docs/install/iam_policy.json at the tag
	// AppVersion, which the file must be.
	SHA256 string
}

// The upstream policy files: the one of v2.12.0, and the one of v2.13.0,
// which v2.13.0 to v2.17.1 (and v3.0.0 to v3.5.0) publish unchanged.
const (
	policyV2_12 = "iam_policy-v2.12.0.json"
	policyV2_13 = "iam_policy-v2.13.0.json"
	sumV2_12    = "05780d548cae2d0ef012988ec1053e7733011c2a0415a7ca02c363907e455016"
	sumV2_13    = "16f232c9d9f79366fe949c4550ad517a202380058a9e48d45a4e215044a20a6a"
)

// lbCharts are the chart versions whose policy the stack has: each one's
// Chart.yaml (helm/aws-load-balancer-controller at the tag) names that
// version and appVersion. Adding a chart is adding its row, and its
// policy file when the document changed; a chart of another major
// (v3) also needs its values and upgrade notes checked against
// edge.NewController, which is why none is listed yet.
var lbCharts = map[string]LBChart{
	"1.12.0": {"v2.12.0", policyV2_12, sumV2_12},
	"1.13.0": {"v2.13.0", policyV2_13, sumV2_13},
	"1.13.1": {"v2.13.1", policyV2_13, sumV2_13},
	"1.13.2": {"v2.13.2", policyV2_13, sumV2_13},
	"1.13.3": {"v2.13.3", policyV2_13, sumV2_13},
	"1.13.4": {"v2.13.4", policyV2_13, sumV2_13},
	"1.14.0": {"v2.14.0", policyV2_13, sumV2_13},
	"1.14.1": {"v2.14.1", policyV2_13, sumV2_13},
	"1.15.0": {"v2.15.0", policyV2_13, sumV2_13},
	"1.16.0": {"v2.16.0", policyV2_13, sumV2_13},
	"1.17.1": {"v2.17.1", policyV2_13, sumV2_13},
}

// LBCharts are the chart versions the stack has a policy for, and what
// each installs.
func LBCharts() map[string]LBChart { return maps.Clone(lbCharts) }

// LBChartVersions lists them in order.
func LBChartVersions() []string {
	v := slices.Collect(maps.Keys(lbCharts))
	slices.SortFunc(v, compareVersions)
	return v
}

// LBControllerPolicy is the upstream policy document of the controller a
// chart version installs, as IAM takes it (the file, compacted), and as a
// Document a test can read. A chart without its policy is refused.
func LBControllerPolicy(chart string) (string, Document, error) {
	c, ok := lbCharts[chart]
	if !ok {
		return "", Document{}, fmt.Errorf("aws-load-balancer-controller chart %q has no IAM policy in infra/iampolicy/lbcontroller: "+
			"add docs/install/iam_policy.json at the tag of the chart's appVersion there, and the chart to lbCharts; charts with one: %s",
			chart, strings.Join(LBChartVersions(), ", "))
	}
	raw, err := lbPolicies.ReadFile("lbcontroller/" + c.Policy)
	if err != nil {
		return "", Document{}, err
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		return "", Document{}, fmt.Errorf("%s: %w", c.Policy, err)
	}
	var doc Document
	if err := json.Unmarshal(raw, &doc); err != nil {
		return "", Document{}, fmt.Errorf("%s: %w", c.Policy, err)
	}
	return compact.String(), doc, nil
}

// compareVersions orders dotted versions numerically.
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		var x, y int
		fmt.Sscan(as[i], &x)
		fmt.Sscan(bs[i], &y)
		if x != y {
			return x - y
		}
	}
	return len(as) - len(bs)
}
