package iampolicy

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

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
	doc := LoadBalancerController()
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
	doc := LoadBalancerController()
	for _, action := range []string{
		"ec2:DescribeIpamPools", "ec2:DescribeRouteTables", "elasticloadbalancing:ModifyIpPools",
		"elasticloadbalancing:ModifyCapacityReservation", "elasticloadbalancing:DescribeCapacityReservation",
		"elasticloadbalancing:SetRulePriorities", "elasticloadbalancing:DescribeListenerAttributes",
		"elasticloadbalancing:ModifyListenerAttributes", "shield:CreateProtection", "shield:DeleteProtection",
		"waf-regional:AssociateWebACL", "ec2:GetSecurityGroupsForVpc",
	} {
		if len(granting(doc, action)) == 0 {
			t.Errorf("%s is missing from the %s policy", action, LBControllerVersion)
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
