#!/bin/sh
# Applies bootstrap.sql as the RDS master user. The init container fetched
# the master secret from Secrets Manager into $CREDENTIALS, on a memory
# volume that ends with the pod: the password is read there at each run, so
# a rotation never leaves it stale, and it is never stored in Kubernetes.
# The secret is RDS's one-line JSON; its password holds no double quote
# (RDS refuses " in master passwords), so a JSON escape can only be \\.
set -eu
field() {
	sed -n "s/.*\"$1\" *: *\"\([^\"]*\)\".*/\1/p" "$CREDENTIALS" | sed 's/\\\\/\\/g'
}
PGUSER="$(field username)"
PGPASSWORD="$(field password)"
export PGUSER PGPASSWORD
exec psql -X -v ON_ERROR_STOP=1 -v app="$APP_ROLE" -v schema="$APP_SCHEMA" -v db="$PGDATABASE" -f "$SQL"
