#!/bin/bash
# Per-thread CPU per durable write of a running creditd, once a second.
#
#   Benchmarks/thread-cpu.sh [PID]     (default: the newest process named creditd)
#
# Each line gives the journal records committed in that second, the records per fdatasync,
# and the CPU microseconds per record of the writer thread, of the first event loop and of
# the whole process. Start it beside `creditbench --only rpc --methods ChangeSeats` (or any
# write method) and take the median of the lines of one phase: these per-thread figures move
# far less between runs than the whole run's CPU per call (BENCHMARKS.md, "Per thread, not
# per run"). Reads /proc and `creditctl metrics`; needs a release build of creditctl.
set -euo pipefail
cd "$(dirname "$0")/.."
CTL=.build/release/creditctl
pid=${1:-}
while [ -z "$pid" ]; do pid=$(pgrep -n -x creditd || true); sleep 0.1; done
sock=$(tr '\0' '\n' < "/proc/$pid/cmdline" | grep -A1 -- '--socket' | tail -1)
hz=$(getconf CLK_TCK)

thread() {  # the first thread of $pid whose name starts with $1
    for task in /proc/"$pid"/task/*; do
        case "$(cat "$task/comm" 2>/dev/null)" in "$1"*) basename "$task"; return;; esac
    done
}
writer=; loop=
while [ -z "$writer" ] || [ -z "$loop" ]; do
    sleep 0.2
    writer=$(thread creditd-writer); loop=$(thread NIO-ELT)
done

ticks() { awk '{print $14 + $15}' "$1"; }
sample() {
    local m
    m=$("$CTL" -s "$sock" metrics 2>/dev/null \
        | awk '/^creditd_journal_last_sequence /{s=$2} /^creditd_journal_fsyncs_total /{f=$2} END{print s+0, f+0}')
    echo "$(ticks /proc/"$pid"/task/"$writer"/stat) $(ticks /proc/"$pid"/task/"$loop"/stat) $(ticks /proc/"$pid"/stat) $m"
}

previous=$(sample)
while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    current=$(sample 2>/dev/null) || break
    echo "$previous $current" | awk -v hz="$hz" '{
        records = $9 - $4
        if (records < 1000) next
        us = 1e6 / hz / records
        printf "records/s %7d  records/fsync %5.1f  writer %6.2f  loop %6.2f  process %6.2f us/record\n",
               records, records / ($10 - $5 + 1e-9), ($6 - $1) * us, ($7 - $2) * us, ($8 - $3) * us
    }'
    previous=$current
done
