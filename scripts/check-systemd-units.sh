#!/usr/bin/env bash
# Offline checks of creditd's systemd files (docs/operations.md §5). systemd need not be
# PID 1: everything runs against a staged root directory.
#
#   scripts/check-systemd-units.sh [BUILD_DIR [UNITS_DIR]]
#
# BUILD_DIR defaults to .build/debug, UNITS_DIR to the repository's systemd/ (the
# tests point it at deliberately broken copies to prove each check can fail).
#
# BUILD_DIR must hold the built creditd and creditctl: `verify` checks that the
# ExecStart=/ExecReload= binaries exist. Checks, each fatal:
#   1. systemd-analyze verify --man=no on creditd.service + creditd.socket prints
#      nothing at all (it only warns on unknown or misspelled keys and exits 0);
#   2. systemd-analyze security --offline=true --threshold=10 (exposure <= 1.0);
#   3. sysusers.d/creditd.conf creates creditd and creditd-clients in the stage;
#   4. tmpfiles.d/creditd.conf creates /run/creditd 0750 creditd:creditd-clients
#      and /etc/creditd 0755 root:root;
#   5. the service keeps the choices systemd 252 needs (no notify-reload, no
#      RuntimeDirectory=, no DynamicUser=, PrivateUsers=no);
#   6. the configuration stays read-only to creditd (no ConfigurationDirectory=,
#      ReadOnlyPaths= on /etc/creditd) and a crash loop keeps the socket
#      (StartLimitIntervalSec=0, RestartSec=).
# scripts/test-systemd-boot.sh checks the same at runtime, under systemd as PID 1.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-.build/debug}
case "$build" in /*) ;; *) build="$PWD/$build" ;; esac
units=${2:-$repo/systemd}
case "$units" in /*) ;; *) units="$PWD/$units" ;; esac

fail() { printf 'check-systemd-units: FAIL: %s\n' "$*" >&2; exit 1; }
pass() { printf 'check-systemd-units: ok: %s\n' "$*"; }

for file in creditd.service creditd.socket sysusers.d/creditd.conf tmpfiles.d/creditd.conf; do
    [ -f "$units/$file" ] || fail "$units/$file is missing"
done

command -v systemd-analyze >/dev/null || fail "systemd-analyze not found (Debian package systemd)"
for binary in creditd creditctl; do
    [ -x "$build/$binary" ] || fail "$build/$binary is missing; build it first (swift build)"
done

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/usr/bin" "$stage/etc/systemd/system" "$stage/lib/systemd" "$stage/run"
cp -a /lib/systemd/system "$stage/lib/systemd/"
install -m755 "$build/creditd" "$build/creditctl" "$stage/usr/bin/"
cp "$units/creditd.service" "$units/creditd.socket" "$stage/etc/systemd/system/"
printf 'check-systemd-units: systemd %s, binaries from %s\n' \
    "$(systemd-analyze --version | awk 'NR==1 {print $2}')" "$build"

# 1. verify: any output at all is a failure.
status=0
out=$(systemd-analyze verify --root="$stage" --man=no creditd.service creditd.socket 2>&1) || status=$?
if [ "$status" -ne 0 ] || [ -n "$out" ]; then
    printf '%s\n' "$out" >&2
    fail "systemd-analyze verify (exit $status) must print nothing"
fi
pass "systemd-analyze verify creditd.service creditd.socket: exit 0, no output"

# 2. security: --threshold is on the internal 0-100 scale, so 10 means <= 1.0.
status=0
out=$(systemd-analyze security --offline=true --root="$stage" --threshold=10 creditd.service 2>&1) || status=$?
overall=$(printf '%s\n' "$out" | grep -E 'Overall exposure level' || true)
if [ "$status" -ne 0 ]; then
    printf '%s\n' "$out" >&2
    fail "systemd-analyze security above threshold 10 (1.0): $overall"
fi
pass "systemd-analyze security --threshold=10: ${overall:-no summary line}"

# 3. sysusers: create the accounts inside the stage only.
status=0
out=$(systemd-sysusers --root="$stage" "$units/sysusers.d/creditd.conf" 2>&1) || status=$?
[ "$status" -eq 0 ] || { printf '%s\n' "$out" >&2; fail "systemd-sysusers exit $status"; }
creditd_uid=$(awk -F: '$1 == "creditd" {print $3}' "$stage/etc/passwd")
creditd_home=$(awk -F: '$1 == "creditd" {print $6}' "$stage/etc/passwd")
clients_gid=$(awk -F: '$1 == "creditd-clients" {print $3}' "$stage/etc/group")
creditd_gid=$(awk -F: '$1 == "creditd" {print $3}' "$stage/etc/group")
[ -n "$creditd_uid" ] && [ -n "$creditd_gid" ] || fail "sysusers did not create user/group creditd"
[ -n "$clients_gid" ] || fail "sysusers did not create group creditd-clients"
[ "$creditd_home" = /var/lib/creditd ] || fail "creditd's home is '$creditd_home', expected /var/lib/creditd"
pass "sysusers.d/creditd.conf: creditd uid $creditd_uid gid $creditd_gid, creditd-clients gid $clients_gid"

# 4. tmpfiles: /run/creditd with the owners resolved from the stage's user database.
status=0
out=$(systemd-tmpfiles --root="$stage" --create "$units/tmpfiles.d/creditd.conf" 2>&1) || status=$?
[ "$status" -eq 0 ] || { printf '%s\n' "$out" >&2; fail "systemd-tmpfiles exit $status"; }
[ -d "$stage/run/creditd" ] || fail "tmpfiles did not create /run/creditd"
got=$(stat -c '%a %u %g' "$stage/run/creditd")
[ "$got" = "750 $creditd_uid $clients_gid" ] \
    || fail "/run/creditd is '$got' (mode uid gid), expected '750 $creditd_uid $clients_gid'"
got=$(stat -c '%a %u %g' "$stage/etc/creditd" 2>/dev/null || echo missing)
[ "$got" = "755 0 0" ] || fail "/etc/creditd is '$got' (mode uid gid), expected '755 0 0'"
pass "tmpfiles.d/creditd.conf: /run/creditd 0750 creditd:creditd-clients, /etc/creditd 0755 root:root"

# 5. Choices the unit must keep on systemd 252 (docs/operations.md §5).
service="$units/creditd.service"
key() { grep -E "^$1=" "$service" | tail -n1 | cut -d= -f2-; }
[ "$(key Type)" = notify ] || fail "Type= must be notify (notify-reload needs systemd >= 253)"
[ "$(key ExecStart)" = /usr/bin/creditd ] || fail "ExecStart= must be /usr/bin/creditd"
[ "$(key ExecReload)" = "/usr/bin/creditctl reload" ] || fail "ExecReload= must be /usr/bin/creditctl reload"
[ "$(key PrivateUsers)" = no ] || fail "PrivateUsers= must be no (SO_PEERCRED authorization)"
for forbidden in RuntimeDirectory RuntimeDirectoryPreserve DynamicUser; do
    ! grep -qE "^$forbidden=" "$service" || fail "$forbidden= must not be used (see docs/operations.md §5)"
done
[ "$(grep -E '^FileDescriptorName=' "$units/creditd.socket" | cut -d= -f2)" = rpc ] \
    || fail "creditd.socket must name its fd rpc"
pass "creditd.service: Type=notify, ExecReload=creditctl reload, no RuntimeDirectory=/DynamicUser=, PrivateUsers=no"

# 6. Read-only configuration; a crash loop keeps retrying rather than hitting the start limit.
! grep -qE '^ConfigurationDirectory=' "$service" \
    || fail "ConfigurationDirectory= must not be used: it makes /etc/creditd writable for creditd"
grep -qE '^ReadOnlyPaths=-?/etc/creditd$' "$service" || fail "ReadOnlyPaths=-/etc/creditd is missing"
[ "$(key Environment)" = CONFIGURATION_DIRECTORY=/etc/creditd ] \
    || fail "Environment=CONFIGURATION_DIRECTORY=/etc/creditd is missing (creditd looks for creditd.json there)"
[ "$(key StartLimitIntervalSec)" = 0 ] && [ -n "$(key RestartSec)" ] \
    || fail "StartLimitIntervalSec=0 and RestartSec= keep creditd.socket alive through a crash loop"
pass "creditd.service: /etc/creditd read-only, no ConfigurationDirectory=, no start limit"

printf 'check-systemd-units: all checks passed\n'
