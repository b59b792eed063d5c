#!/bin/bash
# switchboard-podnet: the pod network of a Switchboard kind node, in place of
# kindnetd (whose module the Go proxy does not serve). On each node, as a
# DaemonSet on the host network: write the CNI configuration for the node's
# podCIDR (Debian's ptp, host-local, portmap and loopback plugins), and route
# every other node's podCIDR to that node's InternalIP.
set -u
conf=/host/etc/cni/net.d/10-switchboard-podnet.conflist
sa=/var/run/secrets/kubernetes.io/serviceaccount
kc() {
  # kind patches CONTROL_PLANE_ENDPOINT in so this works before kube-proxy does.
  kubectl --server="https://${CONTROL_PLANE_ENDPOINT:-kubernetes.default.svc}" \
    --token="$(cat $sa/token)" --certificate-authority=$sa/ca.crt "$@"
}
while true; do
  if nodes=$(kc get nodes -o jsonpath='{range .items[*]}{.metadata.name} {.spec.podCIDR} {.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}'); then
    while read -r name cidr ip; do
      [ -n "$cidr" ] && [ -n "$ip" ] || continue
      if [ "$name" = "$NODE_NAME" ]; then
        want=$(cat <<JSON
{
  "cniVersion": "0.4.0",
  "name": "switchboard-podnet",
  "plugins": [
    {"type": "ptp", "ipMasq": false, "mtu": 1500,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$cidr"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
)
        if [ "$(cat $conf 2>/dev/null)" != "$want" ]; then
          mkdir -p "$(dirname $conf)" && printf '%s\n' "$want" > $conf.tmp && mv $conf.tmp $conf
          echo "CNI configuration for $cidr written"
        fi
      else
        ip route replace "$cidr" via "$ip" || echo "route $cidr via $ip failed"
      fi
    done <<< "$nodes"
  fi
  sleep 10
done
