#!/usr/bin/env bash
# Builds the control-plane binaries the infra/ proof runs (kube-apiserver,
# kube-controller-manager, kube-scheduler from tools/k8s, etcd from tools/etcd,
# and kwok), and the kubectl it drives them with, into a cache keyed by their
# versions, once; later runs find them and return at once. Prints the
# directory holding them.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/k8s-version.sh # K8S, shared with scripts/e2e.sh
KWOK=v0.7.0
dir="${SWITCHBOARD_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/switchboard/tools}/k8s-$K8S-kwok-$KWOK"
bins=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
missing=0
for b in "${bins[@]}"; do [ -x "$dir/$b" ] || missing=1; done
if [ $missing -eq 1 ]; then
  echo "tools: building the Kubernetes $K8S control plane and kwok $KWOK into $dir (about 15 min cold on 2 cores)" >&2
  mkdir -p "$dir.tmp"
  start=$(date +%s)
  (cd tools/k8s && go build -trimpath -ldflags "$K8S_LDFLAGS" -o "$dir.tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler)
  # The etcd kubeadm deploys with $K8S, as on the kind node.
  (cd tools/etcd && go build -trimpath -ldflags "-s -w" -o "$dir.tmp/etcd" go.etcd.io/etcd/server/v3)
  GOBIN="$dir.tmp" GOFLAGS= go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
  echo "tools: built in $(( $(date +%s) - start ))s" >&2
fi
# kubectl is in no Debian release that matches: the one of the same release,
# added beside the others (a cache built before it gains it alone).
if [ ! -x "$dir/kubectl" ]; then
  echo "tools: building kubectl $K8S into $dir" >&2
  (cd tools/k8s && go build -trimpath -ldflags "$K8S_LDFLAGS" -o "$dir/kubectl.$$" k8s.io/kubernetes/cmd/kubectl)
  mv "$dir/kubectl.$$" "$dir/kubectl"
fi
echo "$dir"
