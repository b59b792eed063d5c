#!/usr/bin/env bash
# The release notes: scripts/release-notes.sh vX.Y.Z prints the body of the
# CHANGELOG.md section "## [X.Y.Z] - <date>", and fails when there is none,
# so a tag without its changelog entry makes no release.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 vMAJOR.MINOR.PATCH" >&2
  exit 2
fi
version=${1#v}
changelog=$(cd "$(dirname "$0")/.." && pwd)/CHANGELOG.md
if ! awk -v heading="## [$version] - " '
  /^## \[/ || /^\[[^]]+\]: / { if (found) exit; if (index($0, heading) == 1) { found = 1; next } }
  found { print }
  END { if (!found) exit 1 }' "$changelog"; then
  echo "release-notes: CHANGELOG.md has no section \"## [$version] - <date>\"" >&2
  exit 1
fi
