#!/usr/bin/env bash
# The release archives: scripts/release.sh VERSION OUTDIR [CMD[:PLATFORMS]]...
#
# Builds each command (a main package's directory, e.g. app/cmd/chatload) for
# each of its platforms (GOOS/GOARCH, comma-separated) into
# OUTDIR/<name>-VERSION-<goos>-<goarch>.tar.gz, the binary (<name>.exe on
# Windows) and LICENSE at the archive's root, the layout `pulumi plugin
# install` unpacks for a provider, and writes OUTDIR/SHA256SUMS. Without
# commands it builds the release's: chatload and chatserver for Linux, and
# the Pulumi provider plugin for every platform once
# provider/cmd/pulumi-resource-switchboard exists.
#
# Run it at a clean clone checked out at the tag VERSION: the go command
# stamps the tag into each binary as its module version (a git worktree gets
# no stamp), and a binary stamped otherwise is refused, so an archive never
# carries a build of another commit. The archives are reproducible: static
# binaries built with -trimpath, tar entries owned by root and dated at the
# commit.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 vMAJOR.MINOR.PATCH OUTDIR [CMD_DIR[:GOOS/GOARCH,...]]..." >&2
  exit 2
fi
version=$1 out=$2
shift 2
if [[ ! $version =~ ^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$ ]]; then
  echo "release: version $version: want a release tag vMAJOR.MINOR.PATCH, e.g. v0.1.0" >&2
  exit 2
fi
root=$(cd "$(dirname "$0")/.." && pwd)
every=linux/amd64,linux/arm64,darwin/amd64,darwin/arm64,windows/amd64,windows/arm64
provider=provider/cmd/pulumi-resource-switchboard
if [[ $# -eq 0 ]]; then
  # chatload's worker control and chatserver's sockets are Linux-only.
  set -- app/cmd/chatload:linux/amd64,linux/arm64 app/cmd/chatserver:linux/amd64,linux/arm64
  if [[ -d $root/$provider ]]; then
    set -- "$@" "$provider:$every"
  else
    echo "release: no $provider in this checkout: no provider plugin archives" >&2
  fi
fi

mkdir -p "$out"
out=$(cd "$out" && pwd)
if [[ -n $(ls -A "$out") ]]; then
  echo "release: $out is not empty; SHA256SUMS must cover exactly this release's archives" >&2
  exit 2
fi
epoch=$(git -C "$root" log -1 --format=%ct)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for spec in "$@"; do
  dir=${spec%%:*}
  platforms=$every
  [[ $spec == *:* ]] && platforms=${spec#*:}
  name=$(basename "$dir")
  IFS=, read -ra list <<<"$platforms"
  for platform in "${list[@]}"; do
    goos=${platform%/*} goarch=${platform#*/}
    exe=$name
    [[ $goos == windows ]] && exe=$name.exe
    stage=$work/$name-$goos-$goarch
    mkdir -p "$stage"
    (cd "$root" && CGO_ENABLED=0 GOOS=$goos GOARCH=$goarch go build -buildvcs=true -trimpath \
      -ldflags="-s -w -buildid=" -o "$stage/$exe" "./$dir")
    stamped=$(go version -m "$stage/$exe" | awk '$1 == "mod" { print $3 }')
    if [[ $stamped != "$version" ]]; then
      echo "release: $dir for $platform is version $stamped, not $version: run at a clean clone checked out at the tag $version" >&2
      exit 1
    fi
    cp "$root/LICENSE" "$stage/"
    archive=$name-$version-$goos-$goarch.tar.gz
    tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner \
      -C "$stage" -cf - "$exe" LICENSE | gzip -n -9 >"$out/$archive"
    echo "release: $archive"
  done
done
(cd "$out" && sha256sum -- *.tar.gz >SHA256SUMS)
