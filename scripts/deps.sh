#!/usr/bin/env bash
# Installs the Debian packages Switchboard's local target and tests need,
# only those missing, and says what it installs.
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-sentinel >/dev/null || need+=(redis-sentinel)
command -v nginx >/dev/null || need+=(nginx-light)
command -v prometheus >/dev/null || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null || need+=(prometheus-alertmanager)
[ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql-15)
command -v chromium >/dev/null || need+=(chromium)
# The race detector (make test) needs cgo: a C compiler and libc's headers.
command -v gcc >/dev/null || need+=(gcc)
[ -e /usr/include/stdio.h ] || need+=(libc6-dev)
command -v shellcheck >/dev/null || need+=(shellcheck)
command -v dot >/dev/null || need+=(graphviz)
[ ${#need[@]} -eq 0 ] && exit 0
echo "deps: installing Debian packages: ${need[*]}"
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The packages start their own services; the project starts its own processes on its own ports.
for svc in redis-server redis-sentinel nginx prometheus prometheus-alertmanager postgresql; do
  $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || $SUDO service "$svc" stop >/dev/null 2>&1 || true
done
