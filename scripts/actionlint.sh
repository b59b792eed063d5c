#!/usr/bin/env bash
# Checks every GitHub Actions workflow under .github/workflows with
# actionlint, which runs shellcheck on their `run:` scripts. actionlint is
# built once from the Go module proxy into a cache keyed by its version.
set -euo pipefail
cd "$(dirname "$0")/.."
V=v1.7.12
dir="${SWITCHBOARD_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/switchboard/tools}/actionlint-$V"
if [ ! -x "$dir/actionlint" ]; then
  echo "tools: building actionlint $V into $dir" >&2
  rm -rf "$dir.tmp"
  GOBIN="$dir.tmp" GOFLAGS= go install -trimpath -ldflags "-s -w" "github.com/rhysd/actionlint/cmd/actionlint@$V"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
fi
command -v shellcheck >/dev/null || { echo "actionlint: shellcheck is missing (make deps installs it)" >&2; exit 1; }
"$dir/actionlint" -no-color
