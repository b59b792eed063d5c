// Package iampolicy writes IAM policy documents from Go values, never from
// hand-written JSON strings, so that a test can read every statement; an
// upstream document (the load balancer controller's) is kept as upstream's
// file, embedded, and read into the same values.
package iampolicy

import (
	"encoding/json"
	"fmt"
)

// Document is an IAM policy document.
type Document struct {
	Version   string      `json:"Version"`
	Statement []Statement `json:"Statement"`
}

// Statement is one statement of a document.
type Statement struct {
	Sid       string              `json:"Sid,omitempty"`
	Effect    string              `json:"Effect"`
	Principal map[string][]string `json:"Principal,omitempty"`
	Action    []string            `json:"Action"`
	Resource  []string            `json:"Resource,omitempty"`
	Condition Conditions          `json:"Condition,omitempty"`
}

// UnmarshalJSON reads a statement as IAM writes it, where Action and
// Resource are a string or a list (upstream documents, such as the load
// balancer controller's, use both).
func (s *Statement) UnmarshalJSON(b []byte) error {
	type plain Statement
	var v struct {
		plain
		Action   Values `json:"Action"`
		Resource Values `json:"Resource,omitempty"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*s = Statement(v.plain)
	s.Action, s.Resource = v.Action, v.Resource
	return nil
}

// Conditions map an operator (StringEquals, Null) to condition keys and
// their values.
type Conditions map[string]map[string]Values

// Values are a condition key's values; IAM matches any of them.
type Values []string

// MarshalJSON writes one value as a string, as IAM's examples do.
func (v Values) MarshalJSON() ([]byte, error) {
	if len(v) == 1 {
		return json.Marshal(v[0])
	}
	return json.Marshal([]string(v))
}

// UnmarshalJSON reads both forms IAM writes: one string or a list.
func (v *Values) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*v = Values{one}
		return nil
	}
	return json.Unmarshal(b, (*[]string)(v))
}

// Allow is a statement allowing actions on resources.
func Allow(actions []string, resources ...string) Statement {
	return Statement{Effect: "Allow", Action: actions, Resource: resources}
}

// New is a document of statements.
func New(statements ...Statement) Document {
	return Document{Version: "2012-10-17", Statement: statements}
}

// AssumedBy is a trust policy letting an AWS service assume the role.
func AssumedBy(service string) Document {
	return New(Statement{
		Effect: "Allow", Action: []string{"sts:AssumeRole"},
		Principal: map[string][]string{"Service": {service}},
	})
}

// AssumedByServiceAccount is the IRSA trust policy: only the Kubernetes
// service account namespace/name, through the cluster's OIDC provider.
func AssumedByServiceAccount(providerARN, providerURL, namespace, name string) Document {
	return New(Statement{
		Effect:    "Allow",
		Action:    []string{"sts:AssumeRoleWithWebIdentity"},
		Principal: map[string][]string{"Federated": {providerARN}},
		Condition: Conditions{"StringEquals": {
			providerURL + ":sub": {fmt.Sprintf("system:serviceaccount:%s:%s", namespace, name)},
			providerURL + ":aud": {"sts.amazonaws.com"},
		}},
	})
}

// JSON is the document as IAM takes it.
func (d Document) JSON() (string, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return "", fmt.Errorf("policy document: %w", err)
	}
	return string(b), nil
}
