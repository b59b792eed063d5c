#!/usr/bin/env bash
# make e2e: the dev stack on a real kind cluster. Two paths (docs/e2e.md):
# online, when the registries, chart repositories and get.pulumi.com answer,
# with kind's own node image and the stack's charts; offline, otherwise, built
# on this machine without a registry. E2E_OFFLINE=1 forces offline, 0 online.
# E2E_REDIS=cluster deploys the stack's Redis as a Redis Cluster (redisMode).
# Every build output is cached under ~/.cache/switchboard/e2e, keyed by
# versions, so a second run only checks what it has.
#
#   scripts/e2e.sh            everything: build, cluster, test
#   scripts/e2e.sh build      the offline path's binaries and images only
#   scripts/e2e.sh cluster    build, then create the kind cluster and load the images
#   scripts/e2e.sh test       cluster, then TestDevStackOnKind
#   scripts/e2e.sh path       say which path the others would take, and why
#   scripts/e2e.sh down       delete the kind cluster
#   scripts/e2e.sh env        print the PATH and variables the offline cluster needs (eval it)
#   scripts/e2e.sh cached     succeed if the offline path needs no build, else name what does
#
# What the offline path builds, and from what:
#   - a Debian bookworm base (debootstrap --variant=minbase from the apt
#     mirror this machine is configured with), imported into Docker;
#   - kubelet, kubeadm, kubectl, kube-proxy, kube-apiserver,
#     kube-controller-manager, kube-scheduler (tools/k8s), etcd (tools/etcd),
#     CoreDNS and local-path-provisioner from the Go module proxy, pause from
#     the kubernetes module's pause.c;
#   - the component images kubeadm asks for, under their registry.k8s.io names,
#     each a Debian base plus the binary built here;
#   - the NetworkPolicy agent kube-network-policies (kindnetd's), from the
#     module proxy with a patch for this kernel, on Debian plus nftables;
#   - the node image (infra/kindnode): Debian's systemd, containerd, runc and
#     CNI plugins, the binaries above, and the component images preloaded;
#   - kind itself, and a `docker` wrapper for it (see below).
# The times of each step, cold and warm, go to $CACHE/times.log.
# shellcheck disable=SC2317 # step calls the check and build functions through its arguments
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/k8s-version.sh # K8S, shared with scripts/tools.sh
KIND=v0.33.0
ETCD=v3.6.6 ETCD_TAG=3.6.6-0 # the etcd kubeadm $K8S deploys (its constants.DefaultEtcdVersion)
PAUSE=3.10.1                 # kubeadm's constants.PauseVersion, containerd's sandbox_image
COREDNS=v1.13.1              # kubeadm's constants.CoreDNSVersion
LOCALPATH=v0.0.30
SUITE=bookworm

export GOPROXY=${GOPROXY:-https://proxy.golang.org} GOFLAGS=${GOFLAGS:--mod=mod}
CACHE=${SWITCHBOARD_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/switchboard/e2e}
BIN=$CACHE/bin
K8SBIN=$CACHE/k8s-$K8S
LOGS=$CACHE/logs
mkdir -p "$BIN" "$K8SBIN" "$LOGS"
CLUSTER=switchboard

say() { echo "e2e: $*" >&2; }
die() { echo "e2e: $*" >&2; exit 1; }

# step NAME CHECK BUILD: runs BUILD unless CHECK succeeds, and records how long
# it took (cold: built; warm: cached) in times.log.
step() {
  local name=$1 check=$2 build=$3 began
  began=$(date +%s%N)
  if $check; then
    local ms=$(( ($(date +%s%N) - began) / 1000000 ))
    printf '%s\t%s\twarm\t%d.%03ds\n' "$(date -u +%FT%TZ)" "$name" $((ms / 1000)) $((ms % 1000)) >>"$CACHE/times.log"
    say "$name: cached (${ms}ms)"
    return
  fi
  say "$name: building (log: $LOGS/$name.log)"
  if ! $build >"$LOGS/$name.log" 2>&1; then
    tail -30 "$LOGS/$name.log" >&2
    die "$name: failed, see $LOGS/$name.log"
  fi
  $check || die "$name: built, but its check still fails"
  local s=$(( ($(date +%s%N) - began) / 1000000000 ))
  printf '%s\t%s\tcold\t%ds\n' "$(date -u +%FT%TZ)" "$name" "$s" >>"$CACHE/times.log"
  say "$name: built in ${s}s"
}

nicely() { nice -n "${SWITCHBOARD_NICE:-15}" "$@"; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }
# keyed IMAGE KEY: IMAGE exists and was built from inputs whose hash is KEY
# (its label switchboard.e2e.key).
keyed() { [ "$(docker image inspect -f '{{index .Config.Labels "switchboard.e2e.key"}}' "$1" 2>/dev/null)" = "$2" ]; }

# --- Docker --------------------------------------------------------------

# close_fds closes every descriptor of the shell but 0, 1 and 2.
close_fds() {
  local fd
  for fd in /proc/"$BASHPID"/fd/*; do
    fd=${fd##*/}
    if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
  done
}

# The engine: Debian's docker.io, started here when it is not running.
ensure_docker() {
  if docker info >/dev/null 2>&1; then return; fi
  if ! command -v dockerd >/dev/null; then
    command -v apt-get >/dev/null || die "no Docker engine and no apt-get to install docker.io"
    say "installing docker.io (the Docker engine) from Debian"
    DEBIAN_FRONTEND=noninteractive apt-get install -y docker.io >"$LOGS/apt-docker.log" 2>&1 ||
      die "apt-get install docker.io failed: $LOGS/apt-docker.log"
  fi
  command -v docker >/dev/null || die "no docker client on PATH"
  say "starting dockerd (log: $CACHE/dockerd.log)"
  # Without this shell's other descriptors: run as `flock /tmp/e2e.lock
  # scripts/e2e.sh`, the daemon inherited the lock's and held the lock for as
  # long as it ran, so that every later run waited for ever.
  (close_fds; exec nohup dockerd >"$CACHE/dockerd.log" 2>&1 </dev/null) &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && return; sleep 1; done
  die "dockerd did not start: $CACHE/dockerd.log"
}

# kind runs its nodes with --privileged, which this machine's Docker refuses
# ("unable to apply caps": CAP_SYS_MODULE is outside the bounding set). The
# wrapper, first on kind's PATH only, gives a node every capability but
# SYS_MODULE and SYS_RESOURCE, no seccomp or AppArmor profile, unmasked /proc
# and /sys paths, every device rule and the kernel log; the node's own init
# (infra/kindnode) remounts /sys and the cgroup controllers read-write.
# `docker exec --privileged` (kind runs its commands in nodes so) loses the flag.
write_docker_wrapper() {
  local real
  real=$(PATH=$(echo "$PATH" | tr ':' '\n' | grep -vx "$BIN" | paste -sd:) command -v docker)
  cat >"$BIN/docker.tmp" <<EOF
#!/usr/bin/env bash
# Generated by scripts/e2e.sh: docker for kind on a machine that refuses --privileged.
if [ "\${1:-}" = run ]; then
  args=()
  for a in "\$@"; do
    if [ "\$a" = --privileged ]; then
      args+=(--cap-add ALL --cap-drop SYS_MODULE --cap-drop SYS_RESOURCE
        --security-opt seccomp=unconfined --security-opt apparmor=unconfined
        --security-opt systempaths=unconfined --device-cgroup-rule 'a *:* rwm'
        --device /dev/kmsg)
    else
      args+=("\$a")
    fi
  done
  exec $real "\${args[@]}"
fi
# docker exec --privileged would ask for the refused capabilities again; the
# node's processes have its capabilities without it.
if [ "\${1:-}" = exec ]; then
  args=()
  for a in "\$@"; do [ "\$a" = --privileged ] || args+=("\$a"); done
  exec $real "\${args[@]}"
fi
exec $real "\$@"
EOF
  chmod +x "$BIN/docker.tmp" && mv "$BIN/docker.tmp" "$BIN/docker"
}

# --- Binaries ------------------------------------------------------------

kind_ok() { [ -x "$BIN/kind" ] && "$BIN/kind" version 2>/dev/null | grep -q "$KIND"; }
kind_build() { GOBIN=$BIN GOFLAGS='' nicely go install "sigs.k8s.io/kind@$KIND"; }

K8S_BINS=(kubelet kubeadm kubectl kube-proxy kube-apiserver kube-controller-manager kube-scheduler)
k8s_ok() { for b in "${K8S_BINS[@]}"; do [ -x "$K8SBIN/$b" ] || return 1; done; }
k8s_build() {
  mkdir -p "$K8SBIN.tmp"
  # `make tools` (scripts/tools.sh) builds the control plane the same way: reuse it.
  local tools
  # shellcheck disable=SC2010 # the cache's own directory names, no odd characters
  tools=$(ls -d "${SWITCHBOARD_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/switchboard/tools}/k8s-$K8S-kwok-"*/ 2>/dev/null | grep -v '\.tmp/$' | head -1 || true)
  for b in kube-apiserver kube-controller-manager kube-scheduler; do
    [ -n "$tools" ] && [ -x "$tools/$b" ] && cp "$tools/$b" "$K8SBIN/"
  done
  local want=()
  for b in "${K8S_BINS[@]}"; do [ -x "$K8SBIN/$b" ] || want+=("k8s.io/kubernetes/cmd/$b"); done
  [ ${#want[@]} -gt 0 ] || return 0
  (cd tools/k8s && nicely go build -trimpath -ldflags "$K8S_LDFLAGS" -o "$K8SBIN.tmp/" \
    "${want[@]}")
  mv "$K8SBIN.tmp"/* "$K8SBIN/" && rmdir "$K8SBIN.tmp"
}

etcd_ok() { [ -x "$CACHE/etcd-$ETCD/etcd" ]; }
etcd_build() {
  mkdir -p "$CACHE/etcd-$ETCD"
  (cd tools/etcd && nicely go build -trimpath -ldflags "-s -w" -o "$CACHE/etcd-$ETCD/etcd" go.etcd.io/etcd/server/v3)
}

pause_ok() { [ -x "$CACHE/pause-$PAUSE/pause" ]; }
pause_build() {
  # pause.c from the kubernetes module the node's binaries come from.
  local src
  src=$(cd tools/k8s && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c
  mkdir -p "$CACHE/pause-$PAUSE"
  gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE-switchboard" -o "$CACHE/pause-$PAUSE/pause" "$src"
}

coredns_ok() { [ -x "$CACHE/coredns-$COREDNS/coredns" ]; }
coredns_build() {
  GOBIN=$CACHE/coredns-$COREDNS CGO_ENABLED=0 GOFLAGS='' nicely go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS"
}

localpath_ok() { [ -x "$CACHE/local-path-provisioner-$LOCALPATH/local-path-provisioner" ]; }
localpath_build() {
  GOBIN=$CACHE/local-path-provisioner-$LOCALPATH CGO_ENABLED=0 GOFLAGS='' nicely go install -trimpath -ldflags "-s -w" "github.com/rancher/local-path-provisioner@$LOCALPATH"
}

# --- Images --------------------------------------------------------------

# The Debian base every image starts from, from the mirror apt already uses.
BASE=switchboard.local/debian:$SUITE
apt_mirror() {
  local m
  m=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -1 || true)
  [ -n "$m" ] || m=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | grep -v security | awk '{print $2}' | head -1 || true)
  [ -n "$m" ] || die "no Debian mirror in /etc/apt/sources.list*"
  echo "$m"
}
base_ok() { have_image "$BASE"; }
base_build() {
  local tar=$CACHE/debian-$SUITE-minbase.tar
  if [ ! -s "$tar" ]; then
    command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y debootstrap
    local root=$CACHE/debian-$SUITE-minbase
    rm -rf "$root" && mkdir -p "$root"
    nicely debootstrap --variant=minbase "$SUITE" "$root" "$(apt_mirror)"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -cf "$tar.tmp" . && mv "$tar.tmp" "$tar" && rm -rf "$root"
  fi
  docker import --change 'CMD ["/bin/bash"]' "$tar" "$BASE"
}

# image TAG DIR [build args…]: docker build of DIR, tagged TAG.
image() {
  local tag=$1 dir=$2; shift 2
  docker build --build-arg BASE="$BASE" "$@" -t "$tag" "$dir"
}

# A context directory with the files an image needs, under the cache.
ctx() { local d=$CACHE/ctx/$1; rm -rf "$d" && mkdir -p "$d" && echo "$d"; }

# kube-network-policies, the NetworkPolicy agent that kindnetd embeds, for the
# node image's default manifests (infra/kindnode/files/kind/manifests/
# default-cni.yaml), next to switchboard-podnet: the module's source at a
# pinned version with infra/kindnode/images/kube-network-policies/nfqueue-xt.patch
# (this kernel has no CONFIG_NFT_QUEUE), on Debian plus Debian's nftables.
# Keyed by the version and that directory's files.
KNP=v0.8.0
KNP_IMAGE=switchboard.local/kube-network-policies:$KNP
KNP_DIR=infra/kindnode/images/kube-network-policies
knp_key() { { echo "$KNP"; cat "$KNP_DIR"/*; } | sha256sum | cut -c1-12; }
knp_ok() { keyed "$KNP_IMAGE" "$(knp_key)"; }
knp_build() {
  local src d
  command -v patch >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y patch || return 1
  src=$(GOFLAGS='' go mod download -json "sigs.k8s.io/kube-network-policies@$KNP" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p') &&
    [ -d "$src" ] && d=$(ctx kube-network-policies) || return 1
  cp -a "$src" "$d/src" && chmod -R u+w "$d/src" && patch -d "$d/src" -p1 <"$KNP_DIR/nfqueue-xt.patch" &&
    (cd "$d/src" && CGO_ENABLED=0 GOFLAGS='' nicely go build -trimpath -ldflags "-s -w" -o "$d/kube-network-policies" ./cmd) &&
    rm -rf "$d/src" && cp "$KNP_DIR/Dockerfile" "$KNP_DIR/netpol.sh" "$d/" &&
    docker build --build-arg BASE="$BASE" --label "switchboard.e2e.key=$(knp_key)" \
      --label "org.opencontainers.image.source=switchboard-e2e" -t "$KNP_IMAGE" "$d"
}

COMPONENTS=(
  "registry.k8s.io/kube-apiserver:$K8S" "registry.k8s.io/kube-controller-manager:$K8S"
  "registry.k8s.io/kube-scheduler:$K8S" "registry.k8s.io/kube-proxy:$K8S"
  "registry.k8s.io/etcd:$ETCD_TAG" "registry.k8s.io/pause:$PAUSE"
  "registry.k8s.io/coredns/coredns:$COREDNS"
  "switchboard.local/podnet:v1" "switchboard.local/local-path-provisioner:$LOCALPATH"
  "$KNP_IMAGE" "$BASE"
)
podnet_key() { cat infra/kindnode/images/podnet.sh "$K8SBIN/kubectl" | sha256sum | cut -c1-12; }
components_ok() {
  for i in "${COMPONENTS[@]}"; do have_image "$i" || return 1; done
  [ "$(docker image inspect -f '{{index .Config.Labels "switchboard.e2e.key"}}' switchboard.local/podnet:v1)" = "$(podnet_key)" ]
}
components_build() {
  local d
  # One image per binary: Debian plus the binary in /usr/local/bin, as
  # kubeadm's manifests call them by name. kube-proxy also needs iptables.
  for b in kube-apiserver kube-controller-manager kube-scheduler; do
    d=$(ctx "$b") && cp "$K8SBIN/$b" "$d/" && binimage "$d" "$b" "" "registry.k8s.io/$b:$K8S"
  done
  d=$(ctx kube-proxy) && cp "$K8SBIN/kube-proxy" "$d/" &&
    binimage "$d" kube-proxy "iptables nftables conntrack ipset kmod" "registry.k8s.io/kube-proxy:$K8S"
  d=$(ctx etcd) && cp "$CACHE/etcd-$ETCD/etcd" "$d/" && binimage "$d" etcd "" "registry.k8s.io/etcd:$ETCD_TAG"
  d=$(ctx coredns) && cp "$CACHE/coredns-$COREDNS/coredns" "$d/" &&
    binimage "$d" coredns "" "registry.k8s.io/coredns/coredns:$COREDNS" '["/usr/local/bin/coredns"]'
  d=$(ctx local-path-provisioner) && cp "$CACHE/local-path-provisioner-$LOCALPATH/local-path-provisioner" "$d/" &&
    binimage "$d" local-path-provisioner "" "switchboard.local/local-path-provisioner:$LOCALPATH"
  d=$(ctx podnet) && cp "$K8SBIN/kubectl" infra/kindnode/images/podnet.sh "$d/" &&
    printf 'FROM %s\nRUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iproute2 iptables && rm -rf /var/lib/apt/lists/*\nCOPY kubectl podnet.sh /usr/local/bin/\n' "$BASE" >"$d/Dockerfile" &&
    docker build --label "switchboard.e2e.key=$(podnet_key)" -t switchboard.local/podnet:v1 "$d"
  # pause: a static binary, nothing else.
  d=$(ctx pause) && cp "$CACHE/pause-$PAUSE/pause" "$d/" &&
    printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$d/Dockerfile" &&
    docker build -t "registry.k8s.io/pause:$PAUSE" "$d"
}
# binimage DIR BINARY "DEBIAN PACKAGES" TAG [ENTRYPOINT]
binimage() {
  local d=$1 b=$2 pkgs=$3 tag=$4 entry=${5:-}
  {
    echo "FROM $BASE"
    [ -z "$pkgs" ] || echo "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $pkgs && rm -rf /var/lib/apt/lists/*"
    echo "COPY $b /usr/local/bin/$b"
    [ -z "$entry" ] || echo "ENTRYPOINT $entry"
    echo "LABEL org.opencontainers.image.source=switchboard-e2e"
  } >"$d/Dockerfile"
  docker build -t "$tag" "$d"
}

# The node image: infra/kindnode plus the binaries, keyed by a hash of
# everything that goes in, with the component images preloaded into
# containerd's content store (unpacked on first use).
node_key() {
  { cat infra/kindnode/Dockerfile; find infra/kindnode/files -type f | sort | xargs cat
    echo "$K8S $ETCD $PAUSE $COREDNS $LOCALPATH"
    for i in "${COMPONENTS[@]}"; do docker image inspect -f '{{.Id}}' "$i"; done; } | sha256sum | cut -c1-12
}
NODE=""
node_ok() { NODE=switchboard.local/kind-node:$K8S-$(node_key) && have_image "$NODE"; }
node_build() {
  local d
  d=$(ctx node) && cp -a infra/kindnode/Dockerfile infra/kindnode/files "$d/" && mkdir -p "$d/bin" &&
    cp "$K8SBIN/kubelet" "$K8SBIN/kubeadm" "$K8SBIN/kubectl" "$d/bin/"
  echo "$K8S" >"$d/files/kind/version"
  image "switchboard.local/kind-node-base:$K8S" "$d"
  docker save "${COMPONENTS[@]}" -o "$d/preload.tar"
  docker rm -f switchboard-node-preload >/dev/null 2>&1 || true
  # containerd alone (the commit keeps the base's STOPSIGNAL), (no systemd), to import the images into its content store.
  docker run -d --name switchboard-node-preload --entrypoint /usr/bin/containerd \
    -v "$d/preload.tar:/preload.tar:ro" "switchboard.local/kind-node-base:$K8S"
  for _ in $(seq 30); do docker exec switchboard-node-preload ctr version >/dev/null 2>&1 && break; sleep 1; done
  docker exec switchboard-node-preload ctr --namespace=k8s.io images import --all-platforms --no-unpack --digests /preload.tar
  docker exec switchboard-node-preload ctr --namespace=k8s.io images list -q
  docker stop switchboard-node-preload
  docker commit \
    --change 'ENTRYPOINT ["/usr/local/bin/switchboard-node-init"]' --change 'CMD ["/sbin/init"]' \
    switchboard-node-preload "$NODE"
  docker rm switchboard-node-preload
  rm -f "$d/preload.tar"
}

# The repository Dockerfile's base images, made here (no registry): the
# build stage's golang:<minor>-bookworm from this machine's Go toolchain, the
# runtime's distroless/static-debian12:nonroot from Debian files.
GOMINOR=$(go env GOVERSION | sed -E 's/^go([0-9]+\.[0-9]+).*/\1/')
GOLANG=golang:$GOMINOR-bookworm
DISTROLESS=gcr.io/distroless/static-debian12:nonroot
bases_ok() { have_image "$GOLANG" && have_image "$DISTROLESS"; }
bases_build() {
  local d
  d=$(ctx golang) && cp infra/kindnode/images/golang/Dockerfile "$d/" && mkdir -p "$d/ca" &&
    cp -a "$(go env GOROOT)" "$d/go" && rm -rf "$d/go/pkg/obj"
  cp /usr/local/share/ca-certificates/*.crt "$d/ca/" 2>/dev/null || true
  image "$GOLANG" "$d"
  image "$DISTROLESS" infra/kindnode/images/distroless
}

# src_key DOCKERFILE PATH…: the hash of a Dockerfile, go.mod, go.sum and
# the files under the PATHs, less the _test.go files, which the binary does
# not contain (and which others edit all day: a test edited during the build
# failed its check).
src_key() {
  local dockerfile=$1 files
  shift
  files=$(find "$@" -type f ! -name '*_test.go' | sort)
  { cat "$dockerfile" go.mod go.sum; echo "$files"; echo "$files" | xargs cat; } | sha256sum | cut -c1-12
}
# repo_image DOCKERFILE TAG KEY: a Dockerfile of the repository, built from
# its root. Docker's legacy builder (no buildx here) does not define
# $BUILDPLATFORM, so the Dockerfile is fed with `--platform=$BUILDPLATFORM`
# removed: a build for this machine's platform, which is what that flag
# selects.
repo_image() {
  local arch
  arch=$(go env GOARCH)
  # shellcheck disable=SC2016 # the Dockerfile's literal $BUILDPLATFORM
  sed 's/--platform=\$BUILDPLATFORM //' "$1" | nicely docker build -f - --build-arg TARGETOS=linux \
    --build-arg TARGETARCH="$arch" --label "switchboard.e2e.key=$3" -t "$2" .
}

# The chat server from the repository's Dockerfile, keyed by its sources.
CHAT=switchboard/chatserver:dev
chat_key() { src_key Dockerfile app; }
chat_ok() { keyed "$CHAT" "$(chat_key)"; }
chat_build() { repo_image Dockerfile "$CHAT" "$(chat_key)"; }

# The echo example's server (examples/echo), which TestDevStackOnKind
# deploys through examples/echo/deploy: its Dockerfile, on the chat server's
# bases, keyed by its sources. echo_image and echo_load are its steps on
# either path (PREFIX online- on the online one).
ECHO=switchboard/echo:dev
echo_key() { src_key examples/echo/Dockerfile examples/echo/*.go; }
echo_ok() { keyed "$ECHO" "$(echo_key)"; }
echo_build() { repo_image examples/echo/Dockerfile "$ECHO" "$(echo_key)"; }
echo_image() { step "${1:-}echo-image" echo_ok echo_build; }
echo_load() {
  local began
  began=$(date +%s)
  kind load docker-image --name "$CLUSTER" "$ECHO"
  record "${1:-}kind-load-echo-image" "$began"
}

# Redis, PostgreSQL and NGINX from Debian packages (infra/kindnode/images).
DATA_IMAGES=(redis:7.0-bookworm postgres:15-bookworm nginx:1.30-sid)
data_ok() { for i in "${DATA_IMAGES[@]}"; do have_image "switchboard.local/$i" || return 1; done; }
data_build() {
  for i in "${DATA_IMAGES[@]}"; do image "switchboard.local/$i" "infra/kindnode/images/${i%%:*}"; done
}

# metrics-server, which the dev stack's chart would install (the HPA's CPU
# metric): built from its module, applied from the module's own release
# manifests with this image and --kubelet-insecure-tls (kind's kubelets serve
# self-signed certificates), as the stack's metricsServer setting does.
METRICS=v0.8.0
METRICS_IMAGE=switchboard.local/metrics-server:$METRICS
metrics_ok() { have_image "$METRICS_IMAGE"; }
metrics_build() {
  local d
  d=$(ctx metrics-server)
  GOBIN=$d CGO_ENABLED=0 GOFLAGS='' nicely go install -trimpath -ldflags "-s -w" "sigs.k8s.io/metrics-server/cmd/metrics-server@$METRICS"
  binimage "$d" metrics-server "" "$METRICS_IMAGE" '["/usr/local/bin/metrics-server"]'
}
metrics_apply() {
  local dir
  dir=$(GOFLAGS='' go mod download -json "sigs.k8s.io/metrics-server@$METRICS" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  kubectl kustomize "$dir/manifests/overlays/release" |
    sed "s|image: .*metrics-server.*|image: $METRICS_IMAGE|" |
    kubectl --context "kind-$CLUSTER" apply -f -
  kubectl --context "kind-$CLUSTER" -n kube-system get deploy metrics-server -o jsonpath='{.spec.template.spec.containers[0].args}' | grep -q kubelet-insecure-tls ||
    kubectl --context "kind-$CLUSTER" -n kube-system patch deployment metrics-server --type=json \
      -p '[{"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"--kubelet-insecure-tls"}]'
}

# prometheus-adapter, which the dev stack runs from this image (its
# prometheusAdapterImage setting) to serve the HPA the connections metric:
# built from its module, as the stack would pull it from registry.k8s.io.
ADAPTER=v0.12.0
ADAPTER_IMAGE=switchboard.local/prometheus-adapter:$ADAPTER
adapter_ok() { have_image "$ADAPTER_IMAGE"; }
adapter_build() {
  local d src
  d=$(ctx prometheus-adapter)
  # Built inside the module (`go install m@v` asks the proxy for the
  # module's version list, which it refuses for this one).
  src=$(GOFLAGS='' go mod download -json "sigs.k8s.io/prometheus-adapter@$ADAPTER" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  (cd "$src" && CGO_ENABLED=0 GOFLAGS=-mod=readonly nicely go build -trimpath -ldflags "-s -w" -o "$d/adapter" ./cmd/adapter)
  binimage "$d" adapter "" "$ADAPTER_IMAGE" '["/usr/local/bin/adapter"]'
}

# Alertmanager, which infra/kindnode/prometheus.yaml runs beside the cluster's
# Prometheus (existing mode) and the dev stack routes its alerts through (an
# AlertmanagerConfig): built from its module, its UI assets included.
AM=v0.28.1
AM_IMAGE=switchboard.local/alertmanager:$AM
am_ok() { have_image "$AM_IMAGE"; }
am_build() {
  local d src
  d=$(ctx alertmanager)
  src=$(GOFLAGS='' go mod download -json "github.com/prometheus/alertmanager@$AM" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  (cd "$src" && CGO_ENABLED=0 GOFLAGS=-mod=readonly nicely go build -trimpath \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=${AM#v}" -o "$d/alertmanager" ./cmd/alertmanager)
  binimage "$d" alertmanager "" "$AM_IMAGE" '["/usr/local/bin/alertmanager"]'
}

# The Prometheus Operator v0.85.0 and its config reloader (tools/prometheus-operator),
# applied from its module's bundle.yaml (CRDs, RBAC, Deployment) with these
# images; it runs infra/kindnode/prometheus.yaml's Prometheus (built below).
PROMOP=v0.85.0
PROMOP_BIN=$CACHE/prometheus-operator-$PROMOP
promop_ok() { have_image "switchboard.local/prometheus-operator:$PROMOP" && have_image "switchboard.local/prometheus-config-reloader:$PROMOP"; }
promop_build() {
  mkdir -p "$PROMOP_BIN"
  # shellcheck disable=SC2015 # build unless both binaries are there
  [ -x "$PROMOP_BIN/operator" ] && [ -x "$PROMOP_BIN/prometheus-config-reloader" ] ||
    (cd tools/prometheus-operator && CGO_ENABLED=0 nicely go build -trimpath -ldflags "-s -w" -o "$PROMOP_BIN/" \
      github.com/prometheus-operator/prometheus-operator/cmd/operator \
      github.com/prometheus-operator/prometheus-operator/cmd/prometheus-config-reloader)
  local d b
  for b in operator prometheus-config-reloader; do
    d=$(ctx "promop-$b") && cp "$PROMOP_BIN/$b" infra/kindnode/images/prometheus-operator/Dockerfile "$d/"
    local tag=switchboard.local/$b:$PROMOP
    [ "$b" = operator ] && tag=switchboard.local/prometheus-operator:$PROMOP
    docker build --build-arg BASE="$BASE" --build-arg BINARY="$b" -t "$tag" \
      --label "org.opencontainers.image.source=switchboard-e2e" "$d"
    docker build -t "$tag" - <<EOF
FROM $tag
ENTRYPOINT ["/bin/$b"]
EOF
  done
}
# Prometheus itself from its module: Debian's prometheus package (2.42) is
# built without Kubernetes service discovery ("field kubernetes_sd_configs not
# found in type config.ScrapeConfig" on the operator's configuration). Built
# without the web UI's assets (the module has none); the API is all the test uses.
PROM=v0.316.0 PROM_VERSION=3.16.0
PROM_IMAGE=switchboard.local/prometheus:v$PROM_VERSION
prom_ok() { have_image "$PROM_IMAGE"; }
prom_build() {
  local d
  d=$(ctx prometheus)
  [ -x "$CACHE/prometheus-v$PROM_VERSION/prometheus" ] ||
    GOBIN=$CACHE/prometheus-v$PROM_VERSION CGO_ENABLED=0 GOFLAGS='' nicely go install -trimpath \
      -ldflags "-s -w -X github.com/prometheus/common/version.Version=$PROM_VERSION" \
      "github.com/prometheus/prometheus/cmd/prometheus@$PROM"
  cp "$CACHE/prometheus-v$PROM_VERSION/prometheus" "$d/"
  printf 'FROM %s\nCOPY prometheus /bin/prometheus\nRUN mkdir -p /prometheus && chown 1000:2000 /prometheus\nUSER 1000\nWORKDIR /prometheus\nENTRYPOINT ["/bin/prometheus"]\n' "$BASE" >"$d/Dockerfile"
  docker build -t "$PROM_IMAGE" "$d"
}
PROMOP_IMAGES=("switchboard.local/prometheus-operator:$PROMOP" "switchboard.local/prometheus-config-reloader:$PROMOP")
promop_apply() {
  local dir
  dir=$(GOFLAGS='' go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROMOP" |
    sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  sed -e "s|quay.io/prometheus-operator/prometheus-config-reloader:$PROMOP|${PROMOP_IMAGES[1]}|" \
    -e "s|quay.io/prometheus-operator/prometheus-operator:$PROMOP|${PROMOP_IMAGES[0]}|" "$dir/bundle.yaml" |
    kubectl --context "kind-$CLUSTER" apply --server-side --force-conflicts -f - >/dev/null
  kubectl --context "kind-$CLUSTER" -n default rollout status deployment/prometheus-operator --timeout=3m
  kubectl --context "kind-$CLUSTER" apply -f infra/kindnode/prometheus.yaml
}

# --- Pulumi --------------------------------------------------------------

# The pulumi CLI (tools/pulumi) and the Kubernetes provider plugin
# (tools/pulumi-kubernetes), both from the module proxy, into $BIN; the test
# finds them on PATH (the engine prefers a provider plugin on PATH to one it
# would download) and runs with a throwaway PULUMI_HOME.
PULUMI=v3.274.1
PULUMI_K8S=v4.0.0-20260115033456-f47bc2d6f199
pulumi_ok() { [ -x "$BIN/pulumi" ] && [ "$("$BIN/pulumi" version 2>/dev/null)" = "$PULUMI" ]; }
pulumi_build() {
  (cd tools/pulumi && nicely go build -trimpath \
    -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI" \
    -o "$BIN/pulumi.tmp" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
  mv "$BIN/pulumi.tmp" "$BIN/pulumi"
}
provider_ok() { [ -x "$BIN/pulumi-resource-kubernetes" ] && [ "$(cat "$BIN/pulumi-resource-kubernetes.version" 2>/dev/null)" = "$PULUMI_K8S" ]; }
provider_build() {
  # gen.go reads the schema from the module's directory, which `go list -m`
  # (its lookup) names only once the module is in the module cache.
  (cd tools/pulumi-kubernetes && go mod download github.com/pulumi/pulumi-kubernetes/provider/v4 &&
    VERSION=${PULUMI_K8S#v} go run gen.go &&
    nicely go build -trimpath \
      -ldflags "-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=${PULUMI_K8S#v}" \
      -o "$BIN/pulumi-resource-kubernetes.tmp" .)
  mv "$BIN/pulumi-resource-kubernetes.tmp" "$BIN/pulumi-resource-kubernetes" &&
    echo "$PULUMI_K8S" >"$BIN/pulumi-resource-kubernetes.version"
}

# examples/yaml through the real engine: the Pulumi YAML language host
# (tools/pulumi-yaml, pulumi-yaml from the module proxy with the pulumi
# packages it was released against) and the switchboard provider plugin (provider/cmd/
# pulumi-resource-switchboard, keyed by the sources it is built from), both
# into $BIN, where the CLI finds the language host and the test the plugin
# it points the program's plugins.providers path at. yaml_steps runs them
# on either path (PREFIX online- on the online one).
PULUMI_YAML=v1.25.0
yaml_ok() { [ -x "$BIN/pulumi-language-yaml" ] && [ "$(cat "$BIN/pulumi-language-yaml.version" 2>/dev/null)" = "$PULUMI_YAML" ]; }
yaml_build() {
  (cd tools/pulumi-yaml && nicely go build -trimpath \
    -ldflags "-s -w -X github.com/pulumi/pulumi-yaml/pkg/version.Version=$PULUMI_YAML" \
    -o "$BIN/pulumi-language-yaml.tmp" github.com/pulumi/pulumi-yaml/cmd/pulumi-language-yaml)
  mv "$BIN/pulumi-language-yaml.tmp" "$BIN/pulumi-language-yaml" &&
    echo "$PULUMI_YAML" >"$BIN/pulumi-language-yaml.version"
}
plugin_key() {
  { cat go.mod go.sum; find blueprint provider infra dashboards -type f -name '*.go' ! -name '*_test.go' | sort | xargs cat; } |
    sha256sum | cut -c1-12
}
plugin_ok() { [ -x "$BIN/pulumi-resource-switchboard" ] && [ "$(cat "$BIN/pulumi-resource-switchboard.key" 2>/dev/null)" = "$(plugin_key)" ]; }
plugin_build() {
  local key
  key=$(plugin_key)
  nicely go build -trimpath -o "$BIN/pulumi-resource-switchboard.tmp" ./provider/cmd/pulumi-resource-switchboard &&
    mv "$BIN/pulumi-resource-switchboard.tmp" "$BIN/pulumi-resource-switchboard" &&
    echo "$key" >"$BIN/pulumi-resource-switchboard.key"
}
yaml_steps() {
  step "${1:-}pulumi-language-yaml" yaml_ok yaml_build
  step "${1:-}switchboard-plugin" plugin_ok plugin_build
}

build() {
  ensure_docker
  write_docker_wrapper
  step kind kind_ok kind_build
  step k8s-binaries k8s_ok k8s_build
  step etcd etcd_ok etcd_build
  step pause pause_ok pause_build
  step coredns coredns_ok coredns_build
  step local-path-provisioner localpath_ok localpath_build
  step debian-base base_ok base_build
  step kube-network-policies knp_ok knp_build
  step component-images components_ok components_build
  step node-image node_ok node_build
  step chat-bases bases_ok bases_build
  step chatserver-image chat_ok chat_build
  echo_image
  step data-images data_ok data_build
  step metrics-server metrics_ok metrics_build
  step prometheus-adapter adapter_ok adapter_build
  step alertmanager am_ok am_build
  step prometheus-operator promop_ok promop_build
  step prometheus prom_ok prom_build
  step pulumi-cli pulumi_ok pulumi_build
  step pulumi-kubernetes-provider provider_ok provider_build
  yaml_steps
  say "node image: $NODE"
}

kindenv() { export PATH=$BIN:$K8SBIN:$PATH; }

# record NAME BEGAN: times.log's line for a step that runs every time ("-":
# neither cold nor warm), from BEGAN (date +%s) to now.
record() { printf '%s\t%s\t-\t%ds\n' "$(date -u +%FT%TZ)" "$1" $(( $(date +%s) - $2 )) >>"$CACHE/times.log"; }

# create_cluster NAME [ARGS…]: infra/kind/cluster.yaml's cluster, unless it
# runs already, recorded in times.log as NAME.
create_cluster() {
  local name=$1 began
  shift
  kind get clusters 2>/dev/null | grep -qx "$CLUSTER" && return
  began=$(date +%s)
  kind create cluster --config infra/kind/cluster.yaml --wait 5m "$@"
  record "$name" "$began"
}

cluster() {
  build
  kindenv
  # --image overrides the digest-pinned image of every node; the file stays as users run it.
  create_cluster kind-create-cluster --image "$NODE"
  local began
  began=$(date +%s)
  kind load docker-image --name "$CLUSTER" "$CHAT" "${DATA_IMAGES[@]/#/switchboard.local/}" "$METRICS_IMAGE" "$ADAPTER_IMAGE" "$AM_IMAGE" "${PROMOP_IMAGES[@]}" "$PROM_IMAGE"
  promop_apply
  metrics_apply
  record kind-load-images-and-crds "$began"
  echo_load
  kubectl --context "kind-$CLUSTER" get nodes -o wide
}

# The dev stack's settings for this machine: the images built here, and no
# Helm chart (kube-prometheus-stack and metrics-server come from chart
# repositories on the internet, out of reach here): the cluster's Prometheus
# (existing mode) and metrics-server are applied above. prometheus-adapter
# is the stack's own, from the image built here.
OVERRIDES="edgeImage=switchboard.local/nginx:1.30-sid,redisImage=switchboard.local/redis:7.0-bookworm"
OVERRIDES+=",postgresImage=switchboard.local/postgres:15-bookworm,observability=existing"
OVERRIDES+=",metricsServer=false,prometheusAdapterImage=$ADAPTER_IMAGE"
OVERRIDES+=",prometheusUrl=http://prometheus-operated.monitoring.svc:9090"

# --- Online path ---------------------------------------------------------

# Where the outside answers, the cluster is the one users make (`make
# kind-up`): infra/kind/cluster.yaml's pinned kindest/node, the dev stack as
# Pulumi.dev.yaml has it (kube-prometheus-stack and metrics-server from their
# charts, prometheus-adapter from registry.k8s.io), the provider plugins the engine
# downloads. Its binaries get a directory of their own: the offline one holds
# the docker wrapper and a provider plugin the engine would take from PATH.
ONLINE=$CACHE/online
ONLINE_BIN=$ONLINE/bin

# What the online path fetches from: Docker Hub (kindest/node, the chat
# image's golang base, the stack's images), registry.k8s.io, quay.io and
# gcr.io (the charts' images, distroless), the dev stack's chart
# repositories (read from the components that install them, so they cannot
# drift), get.pulumi.com (the CLI and the provider plugins), and dl.k8s.io
# when no kubectl is on PATH.
online_urls() {
  echo https://registry-1.docker.io/v2/ https://registry.k8s.io/v2/ https://quay.io/v2/ https://gcr.io/v2/ https://get.pulumi.com/
  grep -hoE 'Repo[^"]*"https://[^"]+' infra/observability/observability.go infra/autoscaling/autoscaling.go |
    sed -E 's/.*"//; s|/*$|/index.yaml|' | sort -u
  command -v kubectl >/dev/null || echo "https://dl.k8s.io/release/$K8S/bin/linux/$(go env GOARCH)/kubectl.sha256"
}

# unanswered: the URLs of online_urls that give no HTTP answer within 3 s,
# asked all at once (any status counts: a registry's /v2/ answers 401).
unanswered() {
  local url i pids=() urls=() down=()
  for url in $(online_urls); do
    curl -sI -o /dev/null -m 3 "$url" 2>/dev/null &
    pids+=($!) urls+=("$url")
  done
  for i in "${!pids[@]}"; do wait "${pids[$i]}" || down+=("${urls[$i]}"); done
  echo "${down[*]}"
}

# choose_path sets MODE to online or offline and says why.
MODE=""
choose_path() {
  local down
  case "${E2E_OFFLINE:-}" in
    1) MODE=offline; say "offline path: E2E_OFFLINE=1"; return ;;
    0 | "") ;;
    *) die "E2E_OFFLINE=$E2E_OFFLINE: set it to 1 (offline path), 0 (online path) or leave it unset (detect)" ;;
  esac
  command -v curl >/dev/null || die "curl is missing, which tells the paths apart: apt-get install curl, or set E2E_OFFLINE=1"
  down=$(unanswered)
  if [ -z "$down" ]; then
    MODE=online
    say "online path: the registries, the chart repositories and get.pulumi.com answered${E2E_OFFLINE:+ (E2E_OFFLINE=0)}"
  elif [ "${E2E_OFFLINE:-}" = 0 ]; then
    die "E2E_OFFLINE=0 asks for the online path, but no answer within 3 s from: $down (check the network or its proxy, or unset E2E_OFFLINE to build offline)"
  else
    MODE=offline
    say "offline path: no answer within 3 s from $down (E2E_OFFLINE=0 forces the online path)"
  fi
}

kubectl_ok() { "$BIN/kubectl" version --client 2>/dev/null | grep -q "$K8S"; }
kubectl_fetch() {
  local url
  url=https://dl.k8s.io/release/$K8S/bin/linux/$(go env GOARCH)/kubectl
  curl -fsSLo "$BIN/kubectl.tmp" "$url" &&
    echo "$(curl -fsSL "$url.sha256")  $BIN/kubectl.tmp" | sha256sum -c - &&
    chmod +x "$BIN/kubectl.tmp" && mv "$BIN/kubectl.tmp" "$BIN/kubectl"
}

# The pulumi CLI's release archive (what Pulumi's installer unpacks),
# checked against the release's checksums; pulumi_ok checks its version.
pulumi_fetch() {
  local v=${PULUMI#v} arch tgz
  arch=$(go env GOARCH)
  [ "$arch" != amd64 ] || arch=x64
  tgz=pulumi-v$v-linux-$arch.tar.gz
  curl -fsSLo "$ONLINE/$tgz" "https://get.pulumi.com/releases/sdk/$tgz" &&
    curl -fsSL "https://get.pulumi.com/releases/sdk/pulumi-$v-checksums.txt" | grep " $tgz\$" |
    (cd "$ONLINE" && sha256sum -c -) &&
    tar -xzf "$ONLINE/$tgz" -C "$BIN" --strip-components=1 && rm "$ONLINE/$tgz"
}

online_cluster() {
  ensure_docker
  BIN=$ONLINE_BIN
  mkdir -p "$BIN"
  step online-kind kind_ok kind_build
  yaml_steps online-
  command -v kubectl >/dev/null || step online-kubectl kubectl_ok kubectl_fetch
  command -v pulumi >/dev/null || step online-pulumi-cli pulumi_ok pulumi_fetch
  # The repository's Dockerfile, its bases pulled (chat_build's edit is a no-op for BuildKit).
  step online-chatserver-image chat_ok chat_build
  echo_image online-
  export PATH=$BIN:$PATH
  create_cluster online-kind-create-cluster
  local began
  began=$(date +%s)
  kind load docker-image --name "$CLUSTER" "$CHAT"
  record online-kind-load-image "$began"
  echo_load online-
  kubectl --context "kind-$CLUSTER" get nodes -o wide
}

# --- Test ----------------------------------------------------------------

# e2etest: the path's cluster, then TestDevStackOnKind. Offline, with the
# settings and the provider plugin built here (no downloads); online, with
# Pulumi.dev.yaml's settings alone and the plugins the engine downloads.
e2etest() {
  local settings=$OVERRIDES no_downloads=true redis
  case "${E2E_REDIS:-}" in
    "") redis="" ;;
    standalone | cluster) redis=redisMode=$E2E_REDIS ;;
    *) die "E2E_REDIS=$E2E_REDIS: set it to cluster (a Redis Cluster: the stack's redisMode: cluster), standalone, or leave it unset (Pulumi.dev.yaml's redisMode)" ;;
  esac
  if [ "$MODE" = online ]; then
    online_cluster
    settings="" no_downloads=false
  else
    cluster
  fi
  settings+=${redis:+${settings:+,}$redis}
  E2E_HOME=$(mktemp -d)
  # The cluster goes with the test, unless SWITCHBOARD_KEEP_CLUSTER=1 (the
  # trap runs after this function returns: it uses globals only).
  trap 'rm -rf "$E2E_HOME"; [ "${SWITCHBOARD_KEEP_CLUSTER:-}" = 1 ] || kind delete cluster --name "$CLUSTER"' EXIT
  local home=$E2E_HOME began
  began=$(date +%s)
  say "TestDevStackOnKind, $MODE path, Redis ${E2E_REDIS:-as configured} (PULUMI_HOME=$home)"
  PULUMI_HOME=$home PULUMI_SKIP_UPDATE_CHECK=1 PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=$no_downloads \
    SWITCHBOARD_STACK_OVERRIDES="$settings" \
    go test -count=1 -v -timeout 60m -run '^TestDevStackOnKind$' ./infra/
  record "$MODE-test-dev-stack-on-kind" "$began"
}

# cached: succeeds when every build step would be a cache hit (for .ci/run),
# else names the steps that would build. The images live in the engine's
# store, so it starts an installed engine that is not running (nothing on
# this machine starts one at boot).
cached() {
  if ! docker info >/dev/null 2>&1; then
    command -v dockerd >/dev/null || { echo "the Docker engine (docker.io)"; return 1; }
    ensure_docker || { echo "a Docker engine that starts (see $CACHE/dockerd.log)"; return 1; }
  fi
  local missing=() pair
  yaml_ok || missing+=(pulumi-language-yaml)
  plugin_ok || missing+=(switchboard-plugin)
  for pair in kind:kind_ok k8s-binaries:k8s_ok etcd:etcd_ok pause:pause_ok coredns:coredns_ok \
    local-path-provisioner:localpath_ok debian-base:base_ok kube-network-policies:knp_ok component-images:components_ok node-image:node_ok \
    chat-bases:bases_ok data-images:data_ok metrics-server:metrics_ok prometheus-adapter:adapter_ok alertmanager:am_ok prometheus-operator:promop_ok prometheus:prom_ok pulumi-cli:pulumi_ok pulumi-kubernetes-provider:provider_ok; do
    ${pair#*:} || missing+=("${pair%%:*}")
  done
  echo_ok || missing+=(echo-image)
  [ ${#missing[@]} -eq 0 ] || { echo "${missing[*]}"; return 1; }
}

# One line, parsed whole before it runs: editing this file while it runs is safe.
main() {
  case "${1:-all}" in
    cached) cached ;;
    build) build ;;
    node) ensure_docker; write_docker_wrapper; step node-image node_ok node_build; say "node image: $NODE" ;;
    cluster) choose_path; if [ "$MODE" = online ]; then online_cluster; else cluster; fi ;;
    path) choose_path ;;
    down) kindenv; PATH=$PATH:$ONLINE_BIN kind delete cluster --name "$CLUSTER" ;;
    env) build >&2; echo "export PATH=$BIN:$K8SBIN:\$PATH" ;;
    all | test) choose_path; e2etest ;;
    *) die "unknown command $1 (build, cluster, test, path, down, env, cached)" ;;
  esac
}
main "$@"; exit $?
