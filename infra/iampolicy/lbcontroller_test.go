package iampolicy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// policies are the documents of every chart version the stack accepts.
func policies(t *testing.T) map[string]Document {
	t.Helper()
	out := map[string]Document{}
	for _, chart := range LBChartVersions() {
		_, doc, err := LBControllerPolicy(chart)
		if err != nil {
			t.Fatalf("chart %s: %v", chart, err)
		}
		out[chart] = doc
	}
	return out
}

// granting returns the statements of doc that allow action.
func granting(doc Document, action string) []Statement {
	var out []Statement
	for _, st := range doc.Statement {
		if st.Effect == "Allow" && slices.Contains(st.Action, action) {
			out = append(out, st)
		}
	}
	return out
}

// Upstream's policy lets the controller delete or change only the load
// balancers, target groups and security groups it tagged
// elbv2.k8s.aws/cluster (aws-load-balancer-controller docs/install/iam_policy.json;
// IAM "Null" condition operator: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html#Conditions_Null).
// A statement that grants one of them without the condition would let it
// delete any load balancer or security group in the account.
func TestLBControllerDeletesOnlyWhatItTagged(t *testing.T) {
	for chart, doc := range policies(t) {
		t.Run(chart, func(t *testing.T) { deletesOnlyWhatItTagged(t, doc) })
	}
}

func deletesOnlyWhatItTagged(t *testing.T, doc Document) {
	for _, action := range []string{
		"elasticloadbalancing:DeleteLoadBalancer", "elasticloadbalancing:DeleteTargetGroup", "ec2:DeleteSecurityGroup",
		"ec2:DeleteTags", "elasticloadbalancing:ModifyLoadBalancerAttributes", "elasticloadbalancing:SetSecurityGroups",
		"elasticloadbalancing:ModifyTargetGroup", "elasticloadbalancing:ModifyTargetGroupAttributes",
	} {
		sts := granting(doc, action)
		if len(sts) == 0 {
			t.Errorf("%s is not granted: the controller needs it", action)
		}
		for _, st := range sts {
			if got := st.Condition["Null"]["aws:ResourceTag/"+ClusterTag]; !slices.Equal(got, Values{"false"}) {
				t.Errorf("%s granted on %v with conditions %v: want it only where aws:ResourceTag/%s is set", action, st.Resource, st.Condition, ClusterTag)
			}
		}
	}
	for _, action := range []string{"elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:CreateTargetGroup"} {
		for _, st := range granting(doc, action) {
			if got := st.Condition["Null"]["aws:RequestTag/"+ClusterTag]; !slices.Equal(got, Values{"false"}) {
				t.Errorf("%s granted with conditions %v: want the request to set %s", action, st.Condition, ClusterTag)
			}
		}
	}
}

// The actions controllers since v2.7 call, which a hand-written list missed:
// without them the controller fails on IPAM pools, route tables, capacity
// reservations, rule priorities and Shield.
func TestLBControllerHasTheActionsOfItsVersion(t *testing.T) {
	for chart, doc := range policies(t) {
		if chart == "1.12.0" {
			continue // v2.12.0 predates ec2:DescribeRouteTables
		}
		t.Run(chart, func(t *testing.T) { hasTheActionsOfItsVersion(t, doc) })
	}
}

func hasTheActionsOfItsVersion(t *testing.T, doc Document) {
	for _, action := range []string{
		"ec2:DescribeIpamPools", "ec2:DescribeRouteTables", "elasticloadbalancing:ModifyIpPools",
		"elasticloadbalancing:ModifyCapacityReservation", "elasticloadbalancing:DescribeCapacityReservation",
		"elasticloadbalancing:SetRulePriorities", "elasticloadbalancing:DescribeListenerAttributes",
		"elasticloadbalancing:ModifyListenerAttributes", "shield:CreateProtection", "shield:DeleteProtection",
		"waf-regional:AssociateWebACL", "ec2:GetSecurityGroupsForVpc",
	} {
		if len(granting(doc, action)) == 0 {
			t.Errorf("%s is missing from the policy", action)
		}
	}
	for _, st := range doc.Statement {
		for _, a := range st.Action {
			if strings.HasSuffix(a, "*") {
				t.Errorf("action %s: upstream names every action", a)
			}
		}
	}
}

// IAM takes a condition's values as a string or a list: one value is
// written as a string, several as a list.
func TestConditionValuesMarshalAsIAMWritesThem(t *testing.T) {
	b, err := json.Marshal(Conditions{"StringEquals": {"k": {"a"}, "l": {"a", "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"StringEquals":{"k":"a","l":["a","b"]}}`; string(b) != want {
		t.Errorf("conditions %s, want %s", b, want)
	}
}

// The controller's policy follows its chart: every chart version the stack
// accepts installs the controller its Chart.yaml names (appVersion), whose
// policy is upstream's docs/install/iam_policy.json at that tag, embedded
// unmodified (its sha256 is the file's at the tag) and read whole; a chart
// version without its policy is refused, naming what to add.
func TestEveryChartHasItsUpstreamPolicy(t *testing.T) {
	charts := LBCharts()
	if len(charts) == 0 {
		t.Fatal("no chart versions")
	}
	for chart, c := range charts {
		raw, err := lbPolicies.ReadFile("lbcontroller/" + c.Policy)
		if err != nil {
			t.Errorf("chart %s: %v", chart, err)
			continue
		}
		if sum := sha256.Sum256(raw); hex.EncodeToString(sum[:]) != c.SHA256 {
			t.Errorf("chart %s: %s is not upstream's docs/install/iam_policy.json at %s", chart, c.Policy, c.AppVersion)
		}
		if "v2."+strings.TrimPrefix(chart, "1.") != c.AppVersion {
			t.Errorf("chart %s installs %s: the 1.x charts install v2.x of the same minor and patch", chart, c.AppVersion)
		}
		text, doc, err := LBControllerPolicy(chart)
		if err != nil {
			t.Errorf("chart %s: %v", chart, err)
			continue
		}
		// Read whole: every key of every statement is a field of Statement.
		var generic struct{ Statement []map[string]any }
		if err := json.Unmarshal([]byte(text), &generic); err != nil {
			t.Fatal(err)
		}
		if len(generic.Statement) != len(doc.Statement) || len(doc.Statement) < 10 {
			t.Errorf("chart %s: %d statements read of %d", chart, len(doc.Statement), len(generic.Statement))
		}
		for i, st := range generic.Statement {
			for k := range st {
				if !slices.Contains([]string{"Sid", "Effect", "Principal", "Action", "Resource", "Condition"}, k) {
					t.Errorf("chart %s statement %d: key %s is not read", chart, i, k)
				}
			}
			if len(doc.Statement[i].Action) == 0 || len(doc.Statement[i].Resource) == 0 {
				t.Errorf("chart %s statement %d: read without its actions or resources: %+v", chart, i, doc.Statement[i])
			}
		}
	}
	for _, bad := range []string{"1.99.0", "3.5.0", "v2.13.4", ""} {
		_, _, err := LBControllerPolicy(bad)
		if err == nil || !strings.Contains(err.Error(), "has no IAM policy") || !strings.Contains(err.Error(), "1.13.4") || !strings.Contains(err.Error(), "docs/install/iam_policy.json") {
			t.Errorf("chart %q: err %v, want a refusal saying what to add and listing the charts", bad, err)
		}
	}
}
