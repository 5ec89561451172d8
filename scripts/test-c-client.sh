#!/usr/bin/env bash
# The C client the way a C user gets it: build libcreditd-client with its
# Makefile, run its robustness suite (plain, under valgrind and under
# AddressSanitizer), install it into a scratch prefix, compile example.c
# against the installed pkg-config file and run it against a real creditd.
#
#   scripts/test-c-client.sh          (after `swift build`; uses .build/debug/creditd)
#   CREDITD_BINARY=/path/to/creditd scripts/test-c-client.sh
#
# Needs cc, make, pkg-config, libprotobuf-c-dev and valgrind
# (scripts/install-deps.sh). Ends with "c-client: N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

creditd=${CREDITD_BINARY:-$repo/.build/debug/creditd}
if [ ! -x "$creditd" ]; then
  echo "test-c-client: no creditd binary at $creditd; run swift build first or set CREDITD_BINARY" >&2
  echo "c-client: 0 passed, 1 failed"
  exit 1
fi

work=$(mktemp -d /tmp/creditd-c-ci.XXXXXX)
build=$work/build
prefix=$work/prefix
daemon_pid=
cleanup() {
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -KILL "$daemon_pid" 2>/dev/null
    wait "$daemon_pid" 2>/dev/null
  fi
  rm -rf "$work"
}
trap cleanup EXIT

passed=0
failed=0
# check NAME COMMAND...: runs the command with its output in a log, which is
# shown only when it fails.
check() {
  local name=$1; shift
  local log=$work/log-$((passed + failed)).txt
  if "$@" >"$log" 2>&1; then
    passed=$((passed + 1))
    printf 'ok   %s\n' "$name"
  else
    failed=$((failed + 1))
    printf 'FAIL %s\n' "$name"
    sed 's/^/     | /' "$log" | tail -n 60
  fi
}
finish() {
  echo "c-client: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
}

mk() { make --no-print-directory -C clients/c BUILD="$build" "$@"; }

check "make: static and shared library" mk
check "make check: robustness suite" mk check
if command -v valgrind >/dev/null; then
  check "make check-valgrind: robustness suite under valgrind memcheck" mk check-valgrind
else
  check "valgrind is installed (scripts/install-deps.sh)" false
fi
check "make check-asan: robustness suite under AddressSanitizer + UBSan" mk check-asan
check "make install PREFIX=<scratch>" mk install PREFIX="$prefix"

pc_path=$prefix/lib/pkgconfig
check "pkg-config finds creditd-client" env PKG_CONFIG_PATH="$pc_path" pkg-config --exists --print-errors creditd-client
# Word splitting of pkg-config's flags is what a user's shell does too.
compile_example() {
  # shellcheck disable=SC2046
  cc -Wall -Wextra -Werror -o "$work/example" clients/c/example.c \
    $(PKG_CONFIG_PATH="$pc_path" pkg-config --cflags --libs creditd-client)
}
check "cc example.c \$(pkg-config --cflags --libs creditd-client)" compile_example
[ -x "$work/example" ] || finish

run_example() { LD_LIBRARY_PATH="$prefix/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$work/example" "$@"; }
uses_installed_library() {
  local libs
  libs=$(LD_LIBRARY_PATH="$prefix/lib" ldd "$work/example") || return 1
  grep -F "libcreditd-client.so.1 => $prefix/lib/libcreditd-client.so.1" <<<"$libs"
}
check "the example loads the installed libcreditd-client.so.1" uses_installed_library
no_daemon() { run_example "$work/no-such.sock"; test $? -eq 1; }
check "without a daemon the example exits 1 (connect error)" no_daemon

# A daemon on the manual clock, so the dates below are known.
socket=$work/creditd.sock
"$creditd" --clock manual --now 2025-04-01T09:00:00Z --socket "$socket" --state-dir "$work/state" \
  >"$work/creditd.log" 2>&1 </dev/null &
daemon_pid=$!
wait_for_daemon() {
  local creditctl
  creditctl=$(dirname "$creditd")/creditctl
  for _ in $(seq 1 200); do
    kill -0 "$daemon_pid" 2>/dev/null || { cat "$work/creditd.log"; return 1; }
    if [ -x "$creditctl" ]; then
      "$creditctl" health --socket "$socket" --timeout 1 >/dev/null 2>&1 && return 0
    elif [ -S "$socket" ]; then
      sleep 0.2; return 0
    fi
    sleep 0.1
  done
  cat "$work/creditd.log"; return 1
}
check "creditd serves on $socket" wait_for_daemon

example_output=$work/example.out
example_against_daemon() {
  run_example "$socket" >"$example_output" || return 1
  cat "$example_output"
  # Today is 2025-04-01 on the daemon's clock: the seat credit and the
  # cancel credit land on the next bill, 2025-05-01 (within 30 days).
  grep -q '^created example-.*next billing 2025-05-01$' "$example_output" &&
  grep -q '^seats 5 -> 3$' "$example_output" &&
  grep -q '^cancelled, effective 2025-04-01$' "$example_output" &&
  grep -q '^refund status of example-.* as of 2025-04-01 (amounts in minor units of USD):$' "$example_output" &&
  grep -Eq ' seat_change +pending +amount 2000 +remaining 2000 .* expected by 2025-05-01$' "$example_output" &&
  grep -Eq ' cancel +pending +amount 3000 +remaining 3000 .* expected by 2025-05-01$' "$example_output" &&
  grep -q 'totals: pending 5000,' "$example_output"
}
check "example.c against creditd: credits and their expected_by dates" example_against_daemon

# Real responses through the installed library: no memory errors, no leaks.
example_under_valgrind() {
  LD_LIBRARY_PATH="$prefix/lib" valgrind --quiet --error-exitcode=99 --leak-check=full \
    --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \
    "$work/example" "$socket"
}
if command -v valgrind >/dev/null; then
  check "example.c against creditd under valgrind memcheck" example_under_valgrind
else
  check "valgrind is installed (scripts/install-deps.sh)" false
fi

# The refund worker example: follows the feed with ListEvents long polls and
# reports a refund for every credit that becomes refund_pending. The example's
# cancel above left its credits pending until the final invoice settles on
# 2025-05-01; moving the clock there makes them refund_pending while the
# worker waits in a long poll.
compile_refund_worker() {
  # shellcheck disable=SC2046
  cc -Wall -Wextra -Werror -o "$work/refund_worker" clients/c/refund_worker.c \
    $(PKG_CONFIG_PATH="$pc_path" pkg-config --cflags --libs creditd-client)
}
check "cc refund_worker.c \$(pkg-config --cflags --libs creditd-client)" compile_refund_worker
worker_output=$work/refund_worker.out
refund_worker_against_daemon() {
  local creditctl worker_pid status
  creditctl=$(dirname "$creditd")/creditctl
  LD_LIBRARY_PATH="$prefix/lib" "$work/refund_worker" -w 2 -i 2 "$socket" >"$worker_output" 2>&1 &
  worker_pid=$!
  sleep 0.5
  "$creditctl" --socket "$socket" advance-clock --to 2025-05-01T00:00:00Z || return 1
  wait "$worker_pid"; status=$?
  cat "$worker_output"
  [ "$status" -eq 0 ] || return 1
  # The seat change credit (2000) and the cancel credit (3000) were paid.
  grep -Eq '^refunded cr_[0-9]+ of example-.*: refunded 2000, remaining 0$' "$worker_output" &&
  grep -Eq '^refunded cr_[0-9]+ of example-.*: refunded 3000, remaining 0$' "$worker_output" &&
  grep -q '^resume -a [0-9]' "$worker_output" &&
  # Nothing is left to refund.
  [ -z "$("$creditctl" --socket "$socket" credits --state refund_pending -o json | grep credit_id)" ]
}
if [ -x "$work/refund_worker" ]; then
  check "refund_worker.c against creditd: pays every refund_pending credit" refund_worker_against_daemon
fi

stop_daemon() {
  kill -TERM "$daemon_pid"
  wait "$daemon_pid"
  local status=$?
  daemon_pid=
  [ "$status" -eq 0 ] || { echo "creditd exited with $status"; cat "$work/creditd.log"; return 1; }
}
check "creditd stops on SIGTERM with exit status 0" stop_daemon

if [ -s "$example_output" ]; then
  echo "example output:"
  sed 's/^/  /' "$example_output"
fi
finish
