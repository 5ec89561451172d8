#!/usr/bin/env bash
# creditd under a real systemd (252) as PID 1: a minimal Debian 12 booted with
# systemd-nspawn, the units, sysusers and tmpfiles files installed by running the
# README's "Install" lines themselves, then one check per behaviour the README
# promises. Each check prints "PASS name" or "FAIL name: why"; the last line is
# "systemd-boot: N passed, M failed", and the exit status is non-zero on any failure.
#
#   scripts/test-systemd-boot.sh [BUILD_DIR]       (default .build/debug; run as root)
#
# BUILD_DIR holds the creditd and creditctl to test. They link the Swift runtime
# dynamically, so the toolchain's runtime directory (from `swift`, or $SWIFT_RUNTIME)
# is bind-mounted read-only at the same path inside the container.
#
# The root file system is built once with mmdebstrap and cached in
# $CREDITD_BOOT_CACHE (default /var/cache/creditd-boot-test); every run boots an
# --ephemeral copy, so the cache is never changed. About 100 s to build it, then
# about 90 s a run, most of it the watchdog's 30 s and the crash loop.
#
# Needs: mmdebstrap, systemd-nspawn (systemd-container), nsenter, python3
# (scripts/install-deps.sh installs them).
set -uo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$repo/.build/debug}
case "$build" in /*) ;; *) build="$PWD/$build" ;; esac
cache=${CREDITD_BOOT_CACHE:-/var/cache/creditd-boot-test}
rootfs=$cache/rootfs-bookworm
started_at=$SECONDS

passed=0
failed=0
skipped=0
failures=()
pass() { passed=$((passed + 1)); printf 'PASS %s\n' "$1"; }
fail() { failed=$((failed + 1)); failures+=("$1"); printf 'FAIL %s: %s\n' "$1" "$2"; }
skip() { skipped=$((skipped + 1)); printf 'SKIP %s: %s\n' "$1" "$2"; }
note() { printf '   .. %s\n' "$*"; }
journal_dump=${CREDITD_BOOT_JOURNAL:-/tmp/creditd-boot-journal.log}
summary() {
  if [ -n "${leader:-}" ]; then ct journalctl -b -q --no-pager >"$journal_dump" 2>&1 && note "the container's journal: $journal_dump"; fi
  if [ "$failed" -gt 0 ]; then printf 'failed checks: %s\n' "${failures[*]}"; fi
  printf '\nsystemd-boot: %d passed, %d failed, %d skipped\n' "$passed" "$failed" "$skipped"
  note "$((SECONDS - started_at)) s"
}
abort() {
  fail "$1" "$2"
  summary
  exit 1
}

[ "$(id -u)" -eq 0 ] || abort setup "must run as root (systemd-nspawn)"
for tool in mmdebstrap systemd-nspawn nsenter python3; do
  command -v "$tool" >/dev/null || abort setup "$tool not found; run scripts/install-deps.sh"
done
for binary in creditd creditctl; do
  [ -x "$build/$binary" ] || abort setup "$build/$binary is missing; build it first (swift build --product $binary)"
done
runtime=${SWIFT_RUNTIME:-}
if [ -z "$runtime" ]; then
  runtime=$(ldd "$build/creditd" | awk '/libswiftCore.so/ {print $3}' | xargs -r dirname)
fi
[ -n "$runtime" ] && [ -d "$runtime" ] || abort setup "cannot find the Swift runtime libraries; set SWIFT_RUNTIME"

# ---------------------------------------------------------------- the root file system
if [ ! -x "$rootfs/lib/systemd/systemd" ]; then
  note "building the Debian 12 root file system in $rootfs (cached for later runs)"
  mkdir -p "$cache"
  rm -rf "$rootfs.tmp"
  if ! mmdebstrap --variant=minbase --include=systemd,systemd-sysv,dbus bookworm "$rootfs.tmp" \
      >"$cache/mmdebstrap.log" 2>&1; then
    tail -n 20 "$cache/mmdebstrap.log" >&2
    abort rootfs "mmdebstrap failed (log: $cache/mmdebstrap.log)"
  fi
  mv "$rootfs.tmp" "$rootfs"
fi

# ---------------------------------------------------------------- boot
work=$(mktemp -d /tmp/creditd-boot.XXXXXX)
# The repository's systemd/ and the binaries appear at /src, where the README's install
# lines find them under the names they use (.build/release/creditd, systemd/...).
nspawn_pid=
leader=
cleanup() {
  if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
    # nspawn powers the container off, then removes its ephemeral copy.
    kill -TERM "$nspawn_pid" 2>/dev/null
    for _ in $(seq 1 300); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$nspawn_pid" 2>/dev/null
    wait "$nspawn_pid" 2>/dev/null
  fi
  remove_stale_copies
  rm -rf "$work"
}
# Ephemeral copies left by a run that was killed: their lock file is no longer held.
remove_stale_copies() {
  local lock copy
  for lock in "$cache"/.#.#machine.*.lck; do
    [ -e "$lock" ] || continue
    copy=$cache/${lock#"$cache"/.#}; copy=${copy%.lck}
    # nspawn holds an fcntl (OFD) lock; a POSIX lock conflicts with it, flock(1) would not.
    if python3 -c 'import fcntl, sys; fcntl.lockf(open(sys.argv[1], "r+"), fcntl.LOCK_EX | fcntl.LOCK_NB)' "$lock" 2>/dev/null; then
      rm -rf "$copy" "$lock"
    fi
  done
}
remove_stale_copies
trap cleanup EXIT

note "booting $rootfs (ephemeral)"
systemd-nspawn -D "$rootfs" --boot --ephemeral --register=no --keep-unit --private-network \
  --machine="creditd-boot-$$" --console=read-only \
  --bind-ro="$repo/systemd:/src/systemd" \
  --bind-ro="$build:/src/.build/release" \
  --bind-ro="$runtime:$runtime" \
  </dev/null >"$work/console.log" 2>&1 &
nspawn_pid=$!

# The container's PID 1 is the systemd below nspawn. --ephemeral first copies the root
# file system (unless it is on btrfs): seconds, or half a minute on a busy machine.
for _ in $(seq 1 1200); do
  for child in $(pgrep -P "$nspawn_pid" 2>/dev/null) $(pgrep -P "$(pgrep -P "$nspawn_pid" 2>/dev/null | head -n1)" 2>/dev/null); do
    [ "$(cat "/proc/$child/comm" 2>/dev/null)" = systemd ] && leader=$child
  done
  [ -n "$leader" ] && break
  kill -0 "$nspawn_pid" 2>/dev/null || break
  sleep 0.1
done
[ -n "$leader" ] || { cat "$work/console.log" >&2; abort boot "systemd-nspawn did not start systemd"; }

# Runs a command inside the container, with a clean environment.
ct() { nsenter --target "$leader" --all -- /usr/bin/env -i -C / PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
# The same as a user of the container (supplementary groups from /etc/group).
as() { local user=$1; shift; ct setpriv --reuid "$user" --regid "$user" --init-groups "$@"; }

# `systemctl` right after boot may say "Failed to connect to bus" for a moment.
state=
for _ in $(seq 1 150); do
  state=$(ct systemctl is-system-running 2>/dev/null)
  case "$state" in running | degraded) break ;; esac
  sleep 0.2
done
case "$state" in
  running | degraded) pass boot ;;
  *) cat "$work/console.log" >&2; abort boot "the system did not finish booting (state '$state')" ;;
esac

# ---------------------------------------------------------------- helpers
main_pid() { ct systemctl show -P MainPID creditd.service; }
prop() { ct systemctl show -P "$1" "${2:-creditd.service}"; }
# "mark NAME" remembers where the journal ends; "since NAME [warning]" prints creditd's
# lines after it (warning and worse only). The unit and priority are filtered here,
# not with -u/-p: journalctl 252 combines --after-cursor badly with -p.
mark() { ct journalctl --show-cursor -n 0 -q 2>/dev/null | sed -n 's/^-- cursor: //p' >"$work/cursor.$1"; }
since() {
  ct journalctl --after-cursor="$(cat "$work/cursor.$1")" -q -o json --no-pager \
      --output-fields=MESSAGE,PRIORITY,_SYSTEMD_UNIT,UNIT 2>/dev/null \
    | python3 -c '
import json, sys
worst = 4 if sys.argv[1:] == ["warning"] else 7
for line in sys.stdin:
    try:
        entry = json.loads(line)
    except ValueError:
        continue
    ours = "creditd.service" in (entry.get("_SYSTEMD_UNIT"), entry.get("UNIT"))  # UNIT: systemd about it
    message = entry.get("MESSAGE")
    if ours and isinstance(message, str) and int(entry.get("PRIORITY", 6)) <= worst:
        print(message)
' "${@:2}"
}
# journal_has MARK PATTERN [warning]: journald takes a moment to store a line.
journal_has() {
  local cursor=$1 pattern=$2; shift 2
  for _ in $(seq 1 15); do
    # Not grep -q: it would stop reading at the first match, and the filter in `since` would
    # die of a broken pipe (a traceback in the log) while printing the lines after it.
    since "$cursor" "$@" | grep -- "$pattern" >/dev/null && return 0
    sleep 0.2
  done
  return 1
}
wait_active() {  # wait_active SECONDS: until creditd.service is active (and its main pid known)
  for _ in $(seq 1 $(($1 * 5))); do
    [ "$(prop ActiveState)" = active ] && [ "$(main_pid)" != 0 ] && return 0
    sleep 0.2
  done
  return 1
}
write_config() { printf '%s\n' "$1" | ct sh -c 'cat > /etc/creditd/creditd.json'; }

# ---------------------------------------------------------------- install as README says
# The indented lines of README's "### Install" block, minus the build step, run in /src.
sed -n '/^### Install/,/^[^ ].*[^ ]$/p' "$repo/README.md" | sed -n 's/^    //p' | grep -v '^swift build' >"$work/install.sh"
if [ ! -s "$work/install.sh" ]; then
  abort install "no install lines found under README's '### Install'"
fi
note "README install lines:"; sed 's/^/      /' "$work/install.sh"
if ct sh -c 'cd /src && bash -e' <"$work/install.sh" >"$work/install.log" 2>&1; then
  pass install
else
  cat "$work/install.log" >&2
  abort install "the README's install lines failed"
fi

sock=/run/creditd/creditd.sock
got=$(ct stat -c '%a %U %G' "$sock" 2>/dev/null)
dir=$(ct stat -c '%a %U %G' /run/creditd 2>/dev/null)
if [ "$(prop ActiveState creditd.socket)" = active ] && [ "$got" = "660 creditd creditd-clients" ] \
   && [ "$dir" = "750 creditd creditd-clients" ] && [ "$(prop ActiveState)" = inactive ]; then
  pass socket-installed
else
  fail socket-installed "socket unit $(prop ActiveState creditd.socket), $sock '$got', /run/creditd '$dir', service $(prop ActiveState)"
fi

got=$(ct stat -c '%a %U %G' /etc/creditd 2>/dev/null)
if [ "$got" = "755 root root" ]; then pass config-dir-root-owned; else fail config-dir-root-owned "/etc/creditd is '$got'"; fi

# Accounts for the role checks: alice reads (creditd-clients), wendy also writes
# (billing-writers, listed in writer_gids), bob is in neither group.
ct sh -e -c 'groupadd -r billing-writers
  useradd -M -G creditd-clients alice
  useradd -M -G creditd-clients,billing-writers wendy
  useradd -M bob' || abort setup "cannot create the test users"
writers_gid=$(ct getent group billing-writers | cut -d: -f3)
config_base="\"writer_gids\": [$writers_gid], \"max_seats\": 100"
write_config "{ $config_base }"

# ---------------------------------------------------------------- start by socket activation
mark start
out=$(ct creditctl create s1 --customer acme --seats 3 --price 1000 --currency USD --timeout 30 2>&1)
status=$?
if [ "$status" -eq 0 ]; then
  pass activation-first-call
else
  fail activation-first-call "the call that started creditd exited $status: $(printf '%s' "$out" | tail -n1)"
fi
wait_active 30 || abort activation "creditd.service did not become active: $(prop ActiveState)/$(prop SubState)"
# If the first call failed, make sure s1 exists for what follows.
[ "$status" -eq 0 ] || ct creditctl create s1 --customer acme --seats 3 --price 1000 --currency USD >/dev/null 2>&1

journal=$(since start)
warnings=$(since start warning)
# libdispatch logs "Failed to set thread priority ... errno=1" when the syscall filter
# refuses setpriority (EPERM), errno=13 when the nice value is below RLIMIT_NICE's floor.
bad=$(grep -E 'thread priority.*errno=1$|NotReady|liveness probe failed' <<<"$journal")
if [ -z "$warnings" ] && [ -z "$bad" ]; then
  pass journal-clean-at-start
else
  fail journal-clean-at-start "$(printf '%s\n' "$warnings" "$bad" | grep -v '^$' | head -n 3 | tr '\n' '|')"
fi
# LimitNICE=-4 lets libdispatch's manager thread take the nice value -4 it asks for.
# systemd needs CAP_SYS_RESOURCE to raise RLIMIT_NICE; a container on a host (or in a
# sandbox) without it keeps the limit at 0, and that one errno=13 line stays.
nice_limit=$(ct sh -c "awk '/Max nice priority/ {print \$4}' /proc/$(main_pid)/limits")
if [ "$nice_limit" = 24 ]; then
  if grep -q 'thread priority' <<<"$journal"; then
    fail thread-priority-allowed "$(grep 'thread priority' <<<"$journal" | head -n1)"
  else
    pass thread-priority-allowed
  fi
else
  skip thread-priority-allowed "RLIMIT_NICE is $nice_limit, not 24: this host cannot raise it (no CAP_SYS_RESOURCE); $(grep -c 'thread priority' <<<"$journal") errno=13 line(s)"
fi

if grep -qE '^\[creditd\] recovering state .*bytes=[0-9]+' <<<"$journal" && grep -qE '^\[creditd\] serving .*recovery_seconds=' <<<"$journal"; then
  pass recovery-logged
else
  fail recovery-logged "no 'recovering state ... bytes=' and 'serving ... recovery_seconds=' lines"
fi

got=$(prop StatusText)
if [[ "$got" =~ ^SERVING:\ [01]\ subscriptions,\ last\ snapshot ]]; then pass status-serving; else fail status-serving "StatusText '$got'"; fi

# A client that starts the service itself: health waits for recovery within its timeout.
ct systemctl stop creditd.service
out=$(as alice creditctl health --timeout 30 2>&1)
status=$?
if [ "$status" -eq 0 ]; then pass health-during-start; else fail health-during-start "creditctl health exited $status: $(tail -n1 <<<"$out")"; fi
wait_active 30 || abort activation "creditd.service did not come back after stop + activation"

# ---------------------------------------------------------------- roles by group membership
as alice creditctl get s1 >/dev/null 2>&1; alice_read=$?
as alice creditctl seats s1 2 >/dev/null 2>&1; alice_write=$?
as wendy creditctl seats s1 2 >/dev/null 2>&1; wendy_write=$?
as bob creditctl get s1 >/dev/null 2>&1; bob_read=$?
as bob creditctl health >/dev/null 2>&1; bob_health=$?
if [ "$alice_read" -eq 0 ] && [ "$alice_write" -eq 77 ] && [ "$wendy_write" -eq 0 ] && [ "$bob_read" -eq 77 ] && [ "$bob_health" -eq 2 ]; then
  pass roles
else
  fail roles "exit codes: alice get $alice_read (0), alice seats $alice_write (77), wendy seats $wendy_write (0), bob get $bob_read (77), bob health $bob_health (2)"
fi

# ---------------------------------------------------------------- reload
mark reload
write_config "{ \"writer_gids\": [$writers_gid], \"max_seats\": 5 }"
ct systemctl reload creditd.service; reload1=$?
ct creditctl create s6 --customer acme --seats 6 --price 1000 --currency USD >/dev/null 2>&1; six_at_5=$?
write_config "{ $config_base }"
answer=$(ct creditctl reload 2>&1); reload2=$?
ct creditctl create s6 --customer acme --seats 6 --price 1000 --currency USD >/dev/null 2>&1; six_at_100=$?
if [ "$reload1" -eq 0 ] && [ "$six_at_5" -ne 0 ] && [ "$reload2" -eq 0 ] && [ "$six_at_100" -eq 0 ] \
   && grep -q 'max_seats 5 -> 100' <<<"$answer"; then
  pass reload-max-seats
else
  fail reload-max-seats "reload $reload1, 6 seats at max 5 exit $six_at_5 (want non-zero), reload $reload2 '$answer', 6 seats at max 100 exit $six_at_100"
fi

ct systemctl reload creditd.service
got=$(prop StatusText)
if [[ "$got" == "SERVING: 2 subscriptions, last snapshot"* ]] && [ "$(prop ActiveState)" = active ]; then
  pass status-after-reload
else
  fail status-after-reload "StatusText '$got', $(prop ActiveState)"
fi

write_config "{ $config_base, \"clock\": \"manual\", \"snapshot_interval\": 300, \"log_level\": \"debug\" }"
answer=$(ct creditctl reload 2>&1); status=$?
if [ "$status" -eq 0 ] && grep -q 'needs a restart to take effect (running values kept): clock' <<<"$answer" \
   && grep -q 'snapshot_interval 600 -> 300' <<<"$answer" && grep -q 'log_level info -> debug' <<<"$answer" \
   && journal_has reload 'change only with a restart' warning; then
  pass reload-names-restart-only
else
  fail reload-names-restart-only "exit $status: $answer"
fi

mark refused
printf '{\n  "max_seats": 5,\n  "log_level" "debug"\n}\n' | ct sh -c 'cat > /etc/creditd/creditd.json'
ct systemctl reload creditd.service >/dev/null 2>&1; status=$?
journal_has refused 'reload refused.*line 3, column 15' warning
refusal=$(since refused warning)
if [ "$status" -ne 0 ] && grep -q 'reload refused' <<<"$refusal" && grep -q 'line 3, column 15' <<<"$refusal" \
   && [ "$(prop ActiveState)" = active ] && [[ "$(prop StatusText)" == SERVING:* ]]; then
  pass reload-refused-logged
else
  fail reload-refused-logged "systemctl reload exit $status (want non-zero); warnings: $(tr '\n' '|' <<<"$refusal")"
fi

ct rm -f /etc/creditd/creditd.json
answer=$(ct creditctl reload 2>&1); status=$?
if [ "$status" -eq 0 ] && grep -q 'without a configuration file (/etc/creditd/creditd.json does not exist)' <<<"$answer"; then
  pass reload-without-config-file
else
  fail reload-without-config-file "exit $status: $answer"
fi
write_config "{ $config_base }"
ct creditctl reload >/dev/null 2>&1

# ---------------------------------------------------------------- hardening in force
pid=$(main_pid)
status_file=$(ct cat "/proc/$pid/status" 2>/dev/null)
caps=$(grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb):' <<<"$status_file" | awk '{print $2}' | sort -u | tr '\n' ' ')
nnp=$(awk '/^NoNewPrivs:/ {print $2}' <<<"$status_file")
seccomp=$(awk '/^Seccomp:/ {print $2}' <<<"$status_file")
if [ "$caps" = "0000000000000000 " ] && [ "$nnp" = 1 ] && [ "$seccomp" = 2 ]; then
  pass hardening-proc-status
else
  fail hardening-proc-status "capabilities '$caps', NoNewPrivs '$nnp', Seccomp '$seccomp'"
fi

# Inside the service's own mount namespace, as the service's user and as root.
in_service() { ct nsenter --target "$pid" --mount "$@"; }
ro_ok=1; ro_why=
for path in / /usr /etc /etc/creditd; do
  opts=$(in_service findmnt -n -o OPTIONS --target "$path" 2>/dev/null)
  [[ ",$opts," == *,ro,* ]] || { ro_ok=0; ro_why+="$path '$opts' "; }
done
opts=$(in_service findmnt -n -o OPTIONS --target /var/lib/creditd 2>/dev/null)
[[ ",$opts," == *,rw,* ]] || { ro_ok=0; ro_why+="/var/lib/creditd not rw '$opts' "; }
if in_service setpriv --reuid creditd --regid creditd --clear-groups sh -c 'echo "{}" > /etc/creditd/creditd.json' 2>/dev/null \
   || in_service sh -c 'touch /etc/creditd/injected' 2>/dev/null; then
  ro_ok=0; ro_why+="/etc/creditd writable from the service's namespace"
fi
if [ "$ro_ok" -eq 1 ]; then pass hardening-read-only-paths; else fail hardening-read-only-paths "$ro_why"; fi

out=$(ct systemd-analyze security creditd.service 2>&1)
exposure=$(sed -n 's/.*Overall exposure level for creditd.service: \([0-9.]*\).*/\1/p' <<<"$out")
if [ -n "$exposure" ] && awk -v e="$exposure" 'BEGIN { exit !(e <= 1.0) }'; then
  pass "systemd-analyze-security"
  note "exposure $exposure"
else
  fail "systemd-analyze-security" "exposure '${exposure:-?}' (want <= 1.0)"
fi

# ---------------------------------------------------------------- restart keeps the data
ct creditctl create s2 --customer beta --seats 4 --price 500 --currency EUR >/dev/null 2>&1
ct systemctl restart creditd.service
if ct creditctl get s2 -o json 2>/dev/null | grep -q '"seats"' && [[ "$(prop StatusText)" == "SERVING: 3 subscriptions"* ]]; then
  pass restart-keeps-data
else
  fail restart-keeps-data "s2 not found after restart (StatusText '$(prop StatusText)')"
fi

# ---------------------------------------------------------------- recovery extends the start timeout
# systemd at debug level logs every notification it gets: recovery's heartbeat must have
# asked for more start-up time (EXTEND_TIMEOUT_USEC, every 5 s while it runs; at least
# once, at its start, for a recovery this small) with a progress STATUS=, before READY=1.
ct systemd-analyze log-level debug
mark heartbeat
ct systemctl restart creditd.service
journal_has heartbeat 'READY=1'
notes=$(since heartbeat | grep 'Got notification message')
ct systemd-analyze log-level info
extend_line=$(grep -n 'EXTEND_TIMEOUT_USEC=30000000' <<<"$notes" | head -n1 | cut -d: -f1)
ready_line=$(grep -n 'READY=1' <<<"$notes" | head -n1 | cut -d: -f1)
if [ -n "$extend_line" ] && [ -n "$ready_line" ] && [ "$extend_line" -lt "$ready_line" ] \
   && grep -q 'STATUS=recovering state from /var/lib/creditd' <<<"$notes"; then
  pass recovery-extends-start-timeout
else
  fail recovery-extends-start-timeout "notifications: $(head -n 3 <<<"$notes" | tr '\n' '|')"
fi

# ---------------------------------------------------------------- watchdog
mark watchdog
restarts=$(prop NRestarts)
old=$(main_pid)
ct sh -c "kill -STOP $old"
note "creditd ($old) stopped with SIGSTOP; waiting for the 30 s watchdog"
recovered=0
for _ in $(seq 1 300); do
  sleep 0.2
  now=$(main_pid)
  if [ "$now" != 0 ] && [ "$now" != "$old" ] && [ "$(prop ActiveState)" = active ]; then recovered=1; break; fi
done
if [ "$recovered" -eq 1 ] && [ "$(prop NRestarts)" -gt "$restarts" ] \
   && journal_has watchdog 'Watchdog timeout' \
   && ct creditctl get s2 >/dev/null 2>&1; then
  pass watchdog-restart
else
  fail watchdog-restart "restarted $recovered, NRestarts $restarts -> $(prop NRestarts), state $(prop ActiveState)"
fi

# ---------------------------------------------------------------- stop drains a call in flight
# The test service (CREDITD_TEST_SERVICE=1, a drop-in for this check only) has a
# creditd.test.Debug/Echo call that sleeps; a raw ttrpc client on the host sends it
# through the container's socket, then `systemctl stop` runs while it is in flight.
ct mkdir -p /etc/systemd/system/creditd.service.d
printf '[Service]\nEnvironment=CREDITD_TEST_SERVICE=1\n' | ct sh -c 'cat > /etc/systemd/system/creditd.service.d/test-service.conf'
ct systemctl daemon-reload
ct systemctl restart creditd.service
python3 - "/proc/$leader/root$sock" >"$work/inflight.out" 2>&1 <<'EOF' &
import socket, struct, sys, time
def field(number, payload):
    key = bytes([(number << 3) | 2])
    length = len(payload); varint = b""
    while True:
        byte = length & 0x7F; length >>= 7
        varint += bytes([byte | (0x80 if length else 0)])
        if not length: break
    return key + varint + payload
metadata = field(1, b"sleep-ms") + field(2, b"3000")
request = field(1, b"creditd.test.Debug") + field(2, b"Echo") + field(3, field(1, b"in-flight")) + field(5, metadata)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(20)
s.connect(sys.argv[1])
s.sendall(struct.pack(">IIBB", len(request), 1, 1, 0) + request)
print("sent", flush=True)
data = b""
while len(data) < 10 or len(data) < 10 + struct.unpack(">I", data[:4])[0]:
    chunk = s.recv(65536)
    if not chunk: break
    data += chunk
if len(data) >= 10 and data[8] == 2 and b"in-flight" in data[10:]:
    print("answered")
else:
    print("no answer:", data.hex())
EOF
client=$!
for _ in $(seq 1 50); do grep -q sent "$work/inflight.out" 2>/dev/null && break; sleep 0.1; done
sleep 0.5
mark stop
ct systemctl stop creditd.service; stop_status=$?
wait "$client"
result=$(prop Result); exit_status=$(prop ExecMainStatus)
if grep -q answered "$work/inflight.out" && [ "$stop_status" -eq 0 ] && [ "$result" = success ] && [ "$exit_status" = 0 ]; then
  pass stop-drains-in-flight
else
  fail stop-drains-in-flight "client '$(tr '\n' ' ' <"$work/inflight.out")', systemctl stop $stop_status, Result $result, exit status $exit_status"
fi
ct rm -f /etc/systemd/system/creditd.service.d/test-service.conf
ct systemctl daemon-reload

# ---------------------------------------------------------------- crash loop keeps the socket
# A broken configuration makes every start fail. The service keeps retrying every
# RestartSec= without a start limit (StartLimitIntervalSec=0), so creditd.socket stays
# listening: clients wait (and time out) instead of getting ENOENT, and the service
# comes back by itself once the configuration is fixed.
printf '{ "max_seats": 0 }\n' | ct sh -c 'cat > /etc/creditd/creditd.json'
restarts=$(prop NRestarts)
ct systemctl start creditd.service >/dev/null 2>&1
note "crash loop: waiting for more restarts than systemd's default start limit (5 in 10 s)"
for _ in $(seq 1 100); do
  [ "$(prop NRestarts)" -ge $((restarts + 6)) ] && break
  sleep 0.2
done
loops=$(( $(prop NRestarts) - restarts ))
out=$(as alice creditctl get s1 --timeout 1 2>&1); call_status=$?
socket_state=$(prop ActiveState creditd.socket)
if [ "$loops" -ge 6 ] && [ "$socket_state" = active ] && ct test -S "$sock" && ! grep -qi 'no such file' <<<"$out"; then
  crash_ok=1
else
  crash_ok=0
fi
write_config "{ $config_base }"
back=0
for _ in $(seq 1 50); do
  if [ "$(prop ActiveState)" = active ]; then back=1; break; fi
  sleep 0.2
done
if [ "$crash_ok" -eq 1 ] && [ "$back" -eq 1 ] && as alice creditctl get s1 >/dev/null 2>&1; then
  pass crash-loop-keeps-socket
  note "$loops restarts; a client meanwhile got exit $call_status: $(tail -n1 <<<"$out")"
else
  fail crash-loop-keeps-socket "restarts $loops (want >= 6), socket $socket_state, client exit $call_status '$(tail -n1 <<<"$out")', came back $back"
fi

summary
[ "$failed" -eq 0 ]
