#!/bin/bash
# The entrypoint of the kube-network-policies image: kind adds
# CONTROL_PLANE_ENDPOINT (host:port) to the first container of every DaemonSet
# in /kind/manifests/default-cni.yaml; the agent then reaches the API server
# there, as switchboard-podnet does, rather than through the kubernetes
# Service, which needs kube-proxy. exec: the agent is PID 1 and gets the
# image's stop signal (SIGINT), on which it deletes its nftables table.
if [ -n "${CONTROL_PLANE_ENDPOINT:-}" ]; then
  export KUBERNETES_SERVICE_HOST=${CONTROL_PLANE_ENDPOINT%:*} KUBERNETES_SERVICE_PORT=${CONTROL_PLANE_ENDPOINT##*:}
fi
exec /usr/local/bin/kube-network-policies "$@"
