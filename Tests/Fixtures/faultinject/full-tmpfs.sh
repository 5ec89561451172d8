#!/bin/bash
# Issue 11, gap 1, end to end against the real daemon: a state directory on a 2 MiB tmpfs, the
# file system filled up, then waves of 16 concurrent CreateSubscription calls until the disk
# refuses some (the first waves go into the zeros the journal writes ahead of its records), a
# kill -9 and a restart with space. Every call answered UNAVAILABLE must be absent after the
# restart (and every OK present).
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
    "$B/creditctl" create pre-1 --customer c --seats 1 --price 100 --currency USD >/dev/null
    dd if=/dev/zero of="$M/filler" bs=4k 2>/dev/null
    wave=0
    while [ "$wave" -lt 2000 ]; do
        wave=$((wave + 1))
        pids=()
        for n in $(seq 16); do
            ( "$B/creditctl" create "sub-$wave-$n" --customer c --seats 1 --price 100 --currency USD >"$M.out$wave-$n" 2>&1
              echo "exit $?" >>"$M.out$wave-$n" ) &
            pids+=($!)
        done
        wait "${pids[@]}"
        grep -L "^exit 0" "$M".out"$wave"-* | grep -q . && break
    done
    acknowledged=$(grep -l "^exit 0" "$M".out* | wc -l)
    kill -9 "$PID"; wait "$PID" 2>/dev/null
    rm -f "$M/filler"
    start
    present=$("$B/creditctl" export subscriptions | grep -c 'sub-')
    echo "run $run: $acknowledged of $((wave * 16)) acknowledged in $wave waves, $present present after the restart"
    [ "$present" -eq "$acknowledged" ] || { failed=1; grep -h "persistence\|journal" "$M.log" | head -5; }
    kill "$PID"; wait "$PID" 2>/dev/null
    umount "$M"; rm -rf "$M" "$M".*
done
exit $failed
