// Package awsname derives the AWS names of a stack's resources from a
// prefix (the project's name, or blueprint's AWS.Name) and the stack name, so that each fits its documented length and
// charset whatever the stack is called. A name that is too long, or that had
// to be rewritten to fit the charset, is cut and ends in a short hash of the
// whole input: stable across runs, and distinct for distinct stacks.
package awsname

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// hashLen is the hex digits of the hash that replaces what a cut removes.
const hashLen = 8

// Rule is one kind of AWS name's documented limit and charset.
type Rule struct {
	Kind string // what the name names, for errors
	Doc  string // where AWS documents the rule
	Max  int    // characters
	// Lower: AWS stores the name lowercased, so two names differing only
	// in case would collide; derive it lowercase.
	Lower bool
	// Allowed is the charset; other characters become hyphens.
	Allowed     func(rune) bool
	LetterFirst bool // else alphanumeric first
	// NoDoubleHyphen, NoEdgeHyphen: no "--" anywhere, no hyphen at either end.
	NoDoubleHyphen, NoEdgeHyphen bool
	Forbidden                    []string // prefixes AWS reserves
}

func alnum(r rune) bool  { return r < 128 && (letter(r) || r >= '0' && r <= '9') }
func letter(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' }

// The rules of the names the stacks set.
var (
	LoadBalancer = Rule{
		Kind: "load balancer name", Doc: "https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateLoadBalancer.html",
		Max: 32, Allowed: func(r rune) bool { return alnum(r) || r == '-' }, NoEdgeHyphen: true, Forbidden: []string{"internal-"},
	}
	// ReplicationGroup is the ElastiCache replication group id.
	ReplicationGroup = Rule{
		Kind: "ElastiCache replication group id", Doc: "https://docs.aws.amazon.com/AmazonElastiCache/latest/APIReference/API_CreateReplicationGroup.html",
		Max: 40, Lower: true, Allowed: func(r rune) bool { return alnum(r) || r == '-' }, LetterFirst: true, NoDoubleHyphen: true, NoEdgeHyphen: true,
	}
	// DBInstance is the RDS DB instance identifier.
	DBInstance = Rule{
		Kind: "RDS DB instance identifier", Doc: "https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBInstance.html",
		Max: 63, Lower: true, Allowed: func(r rune) bool { return alnum(r) || r == '-' }, LetterFirst: true, NoDoubleHyphen: true, NoEdgeHyphen: true,
	}
	// DBSnapshot is the identifier of the final snapshot RDS takes on delete.
	DBSnapshot = Rule{
		Kind: "RDS final snapshot identifier", Doc: "https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_DeleteDBInstance.html",
		Max: 255, Lower: true, Allowed: func(r rune) bool { return alnum(r) || r == '-' }, LetterFirst: true, NoDoubleHyphen: true, NoEdgeHyphen: true,
	}
	// RolePrefix is an IAM role's name prefix: the provider appends a
	// 26-character unique suffix to reach at most the role name's 64. IAM
	// role names are unique regardless of case.
	RolePrefix = Rule{
		Kind: "IAM role name prefix", Doc: "https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html (RoleName, 64) and the aws_iam_role name_prefix (64 - 26)",
		Max: 64 - 26, Lower: true, Allowed: func(r rune) bool { return alnum(r) || strings.ContainsRune("+=,.@_-", r) },
	}
	// SecurityGroupPrefix is a security group's name prefix: the provider
	// appends a 26-character unique suffix to reach at most the name's 255.
	SecurityGroupPrefix = Rule{
		Kind: "security group name prefix", Doc: "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateSecurityGroup.html (GroupName, 255, not sg-)",
		Max: 255 - 26, Allowed: func(r rune) bool { return alnum(r) || strings.ContainsRune(" ._-:/()#,@[]+=&;{}!$*", r) },
		Forbidden: []string{"sg-"},
	}
	// Cluster is the EKS cluster name.
	Cluster = Rule{
		Kind: "EKS cluster name", Doc: "https://docs.aws.amazon.com/eks/latest/APIReference/API_CreateCluster.html",
		Max: 100, Allowed: func(r rune) bool { return alnum(r) || r == '-' || r == '_' }, NoEdgeHyphen: true,
	}
)

// Check reports whether name obeys the rule.
func (r Rule) Check(name string) error {
	bad := func(why string) error { return fmt.Errorf("%s %q: %s (%s)", r.Kind, name, why, r.Doc) }
	switch {
	case name == "":
		return bad("empty")
	case len(name) > r.Max:
		return bad(fmt.Sprintf("%d characters, at most %d", len(name), r.Max))
	case r.LetterFirst && !letter(rune(name[0])):
		return bad("must start with a letter")
	case !r.LetterFirst && !alnum(rune(name[0])):
		return bad("must start with a letter or digit")
	case r.Lower && strings.ToLower(name) != name:
		return bad("must be lowercase")
	case r.NoDoubleHyphen && strings.Contains(name, "--"):
		return bad(`must not contain "--"`)
	case r.NoEdgeHyphen && strings.HasSuffix(name, "-"):
		return bad("must not end with a hyphen")
	}
	for _, c := range name {
		if !r.Allowed(c) {
			return bad(fmt.Sprintf("%q is not allowed", c))
		}
	}
	for _, p := range r.Forbidden {
		if strings.HasPrefix(name, p) {
			return bad(fmt.Sprintf("must not start with %q", p))
		}
	}
	return nil
}

// Fit derives the name of parts joined by hyphens. Characters outside the
// charset become hyphens; a name too long is cut; either way the name then
// ends in a hash of the input. A derivation that still breaks the rule (a
// reserved prefix, a first character no cut can fix) is refused.
func (r Rule) Fit(parts ...string) (string, error) {
	in := strings.Join(parts, "-")
	if in == "" {
		return "", errors.New(r.Kind + ": nothing to name")
	}
	s := in
	if r.Lower {
		s = strings.ToLower(s)
	}
	s = strings.Map(func(c rune) rune {
		if r.Allowed(c) {
			return c
		}
		return '-'
	}, s)
	if r.NoDoubleHyphen {
		for strings.Contains(s, "--") {
			s = strings.ReplaceAll(s, "--", "-")
		}
	}
	s = strings.Trim(s, "-")
	if s == "" {
		return "", fmt.Errorf("%s: nothing of %q is in the charset (%s)", r.Kind, in, r.Doc)
	}
	if s != in || len(s) > r.Max {
		if r.Max < hashLen+2 {
			return "", fmt.Errorf("%s: %d characters leave no room for a hash", r.Kind, r.Max)
		}
		sum := sha256.Sum256([]byte(in))
		s = strings.TrimRight(s[:min(len(s), r.Max-hashLen-1)], "-") + "-" + hex.EncodeToString(sum[:])[:hashLen]
	}
	if err := r.Check(s); err != nil {
		return "", fmt.Errorf("derive from %q: %w", in, err)
	}
	return s, nil
}

// Prefix derives a name prefix, which ends in a hyphen before the unique
// suffix the provider appends.
func (r Rule) Prefix(parts ...string) (string, error) {
	short := r
	short.Max--
	s, err := short.Fit(parts...)
	if err != nil {
		return "", err
	}
	return s + "-", nil
}

// Names are the names of a stack's AWS resources that carry its name.
type Names struct {
	Base             string // prefix-stack, the tag and description prefix
	Cluster          string
	LoadBalancer     string
	ReplicationGroup string
	DBInstance       string
	DBFinalSnapshot  string
}

// For derives the names of a stack's resources that carry prefix, refusing
// a prefix or stack whose names cannot fit.
func For(prefix, stack string) (Names, error) {
	n := Names{Base: prefix + "-" + stack}
	for _, d := range []struct {
		into  *string
		rule  Rule
		parts []string
	}{
		{&n.Cluster, Cluster, []string{n.Base}},
		{&n.LoadBalancer, LoadBalancer, []string{n.Base}},
		{&n.ReplicationGroup, ReplicationGroup, []string{n.Base}},
		{&n.DBInstance, DBInstance, []string{n.Base}},
		{&n.DBFinalSnapshot, DBSnapshot, []string{n.Base, "final"}},
	} {
		v, err := d.rule.Fit(d.parts...)
		if err != nil {
			return Names{}, fmt.Errorf("stack %q: %w", stack, err)
		}
		*d.into = v
	}
	return n, nil
}
