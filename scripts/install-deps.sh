#!/usr/bin/env bash
# Installs the Debian packages creditd's build and tests use (run as root).
# Swift itself and the Swift packages come from the machine's toolchain and mirror.
set -euo pipefail
packages=(
  pkg-config tzdata                         # time zones for billing dates
  protobuf-compiler protobuf-c-compiler     # code generation (scripts/generate-proto.sh)
  libprotobuf-c-dev                         # the C client library
  golang-go golang-github-containerd-ttrpc-dev golang-github-gogo-protobuf-dev  # Go ttrpc interop test
  systemd                                   # systemd-analyze and systemd-socket-activate
  python3-prometheus-client                 # Prometheus text format check
  valgrind util-linux                       # C client memory checks; setpriv for uid tests
  mmdebstrap systemd-container python3      # scripts/test-systemd-boot.sh: rootfs, nspawn, raw client
  postgresql                                # the shared store's tests: initdb/pg_ctl (/usr/lib/postgresql/*/bin), psql, pgbench
  openssl                                   # the certificates of the shared store's TLS test
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing Debian packages: ${missing[*]}; run as root: sudo $0" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
