#!/usr/bin/env bash
# Makes a local PostgreSQL answer on 127.0.0.1:5432 with a `test` database the `postgres` user
# reaches without a password: what the PostgreSQL tests' DATABASE_URL
# (postgres://postgres@127.0.0.1:5432/test) expects. Used by .ci/run; run it by hand (as root) to
# get the same on a development machine. Does nothing that is already done.
set -euo pipefail

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi
}
ready() { command -v pg_isready >/dev/null && pg_isready -h 127.0.0.1 -p 5432 -q; }

if ! ready; then
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    echo "installing Debian's postgresql (no server on this machine)"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >/dev/null
  fi
  version=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf "%f\n" | sort -V | tail -n 1)
  if ! pg_lsclusters -h | awk '{print $1, $2}' | grep -qx "$version main"; then
    as_root pg_createcluster "$version" main >/dev/null
  fi
  as_root pg_ctlcluster "$version" main start
  for _ in $(seq 1 60); do ready && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432

# Debian's default pg_hba.conf asks for a password on TCP; the tests connect as postgres without one.
for hba in /etc/postgresql/*/main/pg_hba.conf; do
  [ -f "$hba" ] || continue
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    version=$(basename "$(dirname "$(dirname "$hba")")")
    as_root pg_ctlcluster "$version" main reload
  fi
done

exists=$(psql -h 127.0.0.1 -U postgres -d postgres -qAtc "select 1 from pg_database where datname = 'test'")
[ "$exists" = 1 ] || psql -h 127.0.0.1 -U postgres -d postgres -qc 'create database test'
