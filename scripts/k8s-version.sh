# The Kubernetes release both scripts/e2e.sh (the kind node) and
# scripts/tools.sh (infra/'s test control plane) build from tools/k8s, which
# pins the same k8s.io/kubernetes version. Its minor is the prod default EKS
# minor, so what kind proves holds on EKS (infra/kind_version_test.go).
K8S=v1.35.4
K8S_MINOR=${K8S#v1.}
K8S_MINOR=${K8S_MINOR%%.*}
# gitVersion makes the servers report the version kubectl and clients negotiate on.
K8S_LDFLAGS="-s -w -X k8s.io/component-base/version.gitVersion=$K8S -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$K8S_MINOR"
