#!/bin/bash
# Issue 11, gap 1, end to end against the real daemon: a state directory on a 2 MiB tmpfs, the
# file system filled up, 16 concurrent CreateSubscription calls, a kill -9 and a restart with
# space. Every call answered UNAVAILABLE must be absent after the restart (and every OK present).
#
# Needs root (mount). Usage: Tests/Fixtures/faultinject/full-tmpfs.sh [BUILD_DIR] [RUNS]
# BUILD_DIR holds creditd and creditctl (default .build/debug). Exit 1 when a run fails.
set -u
B=$(cd "${1:-.build/debug}" && pwd) || exit 2
RUNS=${2:-5}
failed=0
for run in $(seq "$RUNS"); do
    M=$(mktemp -d /tmp/creditd-full-tmpfs-XXXXXX)
    mount -t tmpfs -o size=2m tmpfs "$M" || { echo "cannot mount a tmpfs (root?)"; exit 2; }
    export CREDITD_SOCKET=$M.sock
    start() {
        "$B/creditd" --state-dir "$M/state" --socket "$CREDITD_SOCKET" --clock manual \
            --now 2025-04-01T09:00:00Z >>"$M.log" 2>&1 &
        PID=$!
        for _ in $(seq 100); do "$B/creditctl" health >/dev/null 2>&1 && break; sleep 0.1; done
    }
    start
    # Leave about 500 bytes in the segment's last page: the next batches only partly fit.
    i=0
    while :; do
        i=$((i + 1))
        "$B/creditctl" create "pre-$i" --customer c --seats 1 --price 100 --currency USD >/dev/null
        size=$(stat -c %s "$M"/state/journal-*.log | tail -1)
        [ $((size % 4096)) -gt 3500 ] && break
    done
    dd if=/dev/zero of="$M/filler" bs=4k 2>/dev/null
    pids=()
    for n in $(seq 16); do
        ( "$B/creditctl" create "sub-$n" --customer c --seats 1 --price 100 --currency USD >"$M.out$n" 2>&1
          echo "exit $?" >>"$M.out$n" ) &
        pids+=($!)
    done
    wait "${pids[@]}"
    acknowledged=$(grep -l "^exit 0" "$M".out* | wc -l)
    kill -9 "$PID"; wait "$PID" 2>/dev/null
    rm -f "$M/filler"
    start
    present=$("$B/creditctl" list | grep -c 'sub-')
    echo "run $run: $acknowledged of 16 acknowledged, $present present after the restart"
    [ "$present" -eq "$acknowledged" ] || { failed=1; grep -h "persistence\|journal" "$M.log" | head -5; }
    kill "$PID"; wait "$PID" 2>/dev/null
    umount "$M"; rm -rf "$M" "$M".*
done
exit $failed
