#!/bin/bash
# switchboard-podnet: the pod network of a Switchboard kind node, in place of
# kindnetd (whose module the Go proxy does not serve). On each node, as a
# DaemonSet on the host network: write the CNI configuration for the node's
# podCIDR (Debian's ptp, host-local, portmap and loopback plugins), route
# every other node's podCIDR to that node's InternalIP, and masquerade what
# pods send beyond the cluster's pod subnet (POD_SUBNET), as kindnetd does:
# without it a pod's packet to the host (an Alertmanager webhook receiver on
# the kind network's gateway) leaves with the pod's address, which the host
# has no route back to. Traffic between pods keeps its source address, which
# NetworkPolicy matches.
set -u
: "${POD_SUBNET:?the pod subnet of the cluster (kind fills it into the manifest)}"
conf=/host/etc/cni/net.d/10-switchboard-podnet.conflist
sa=/var/run/secrets/kubernetes.io/serviceaccount
kc() {
  # kind patches CONTROL_PLANE_ENDPOINT in so this works before kube-proxy does.
  kubectl --server="https://${CONTROL_PLANE_ENDPOINT:-kubernetes.default.svc}" \
    --token="$(cat $sa/token)" --certificate-authority=$sa/ca.crt "$@"
}
while true; do
  iptables -t nat -C POSTROUTING -s "$POD_SUBNET" ! -d "$POD_SUBNET" -j MASQUERADE 2>/dev/null ||
    iptables -t nat -A POSTROUTING -s "$POD_SUBNET" ! -d "$POD_SUBNET" -j MASQUERADE ||
    echo "masquerade of $POD_SUBNET failed"
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
