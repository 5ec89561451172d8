#!/bin/sh
# The PostgreSQL store section of the benchmark on a throwaway cluster: initdb in a temporary
# directory, the server on a Unix socket there only, run as nobody when started as root
# (PostgreSQL refuses root), removed afterwards. Extra arguments go to creditbench, e.g.
#   Benchmarks/postgres.sh --duration 5 --warmup 1
# SCRATCH_PATH picks the build directory (default .build).
set -eu
cd "$(dirname "$0")/.."
bin=$(dirname "$(command -v initdb || ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")
dir=$(mktemp -d /tmp/creditd-pgbench-XXXXXX)
as=""
if [ "$(id -u)" -eq 0 ]; then chown nobody "$dir"; as="setpriv --reuid=65534 --regid=65534 --clear-groups --"; fi
cleanup() { (cd / && $as "$bin/pg_ctl" stop -m immediate -D "$dir/data" >/dev/null 2>&1) || true; rm -rf "$dir"; }
trap cleanup EXIT INT TERM
(cd / && $as "$bin/initdb" -D "$dir/data" -U creditd --auth=trust -E UTF8 --no-instructions >/dev/null)
(cd / && $as "$bin/pg_ctl" start -w -D "$dir/data" -l "$dir/server.log" \
  -o "-c listen_addresses='' -k $dir -c max_connections=200" >/dev/null)
scratch=${SCRATCH_PATH:-.build}
swift build -c release --scratch-path "$scratch" --product creditd >&2
swift build -c release --scratch-path "$scratch" --product creditbench >&2
"$scratch/release/creditbench" --creditd "$scratch/release/creditd" --only postgres --postgres "host=$dir port=5432 user=creditd dbname=postgres" "$@"
