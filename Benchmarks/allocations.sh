#!/bin/bash
# Heap allocations per durable write of a running creditd, per thread.
#
#   Benchmarks/allocations.sh [PID] [SECONDS]   (defaults: the newest creditd, 2 seconds)
#
# Counts calls to libc's malloc in each thread of the daemon for SECONDS (a perf uprobe) and
# divides by the journal records committed meanwhile. Start it beside
# `creditbench --only rpc --methods ChangeSeats` (or any write method) once a phase is under
# way. Unlike CPU time, the count hardly depends on the machine's noise, so a change that
# removes a few allocations from the write path shows (BENCHMARKS.md, "Profiling recipe"). The
# records are counted around the probe's window, and the batch sizes vary, so figures move by
# about one allocation per record between runs: compare several. The probe slows the daemon
# down; read the counts, not its speed. Needs root, perf and a release build of creditctl.
set -euo pipefail
cd "$(dirname "$0")/.."
CTL=.build/release/creditctl
pid=${1:-}
seconds=${2:-2}
while [ -z "$pid" ]; do pid=$(pgrep -n -x creditd || true); sleep 0.1; done
sock=$(tr '\0' '\n' < "/proc/$pid/cmdline" | grep -A1 -- '--socket' | tail -1)
libc=$(awk '$6 ~ /libc\.so/ {print $6; exit}' "/proc/$pid/maps")

if ! perf probe -l 2>/dev/null | grep -q 'probe_libc:creditd_malloc'; then
    perf probe -q -x "$libc" --add 'creditd_malloc=malloc'
fi
trap 'perf probe -q --del "probe_libc:creditd_malloc" 2>/dev/null || true' EXIT

records() {
    "$CTL" -s "$sock" metrics | awk '/^creditd_journal_last_sequence /{print $2 + 0}'
}

before=$(records)
counts=$(perf stat -x, --per-thread -e probe_libc:creditd_malloc -p "$pid" -- sleep "$seconds" 2>&1 >/dev/null) || {
    echo "perf stat failed: $counts" >&2
    exit 1
}
after=$(records)
written=$((after - before))
if [ "$written" -lt 1 ]; then
    echo "no journal records were committed in ${seconds}s" >&2
    exit 1
fi
echo "records committed: $written"
# perf stat -x, --per-thread: "comm-tid,count,unit,event,..." per thread.
echo "$counts" | awk -F, -v records="$written" '$2 ~ /^[0-9]+$/ && $2 > 0 {
    name = $1; sub(/-[0-9]+$/, "", name)
    per[name] += $2; total += $2
} END {
    for (name in per) printf "  %-20s %7.2f allocations per record\n", name, per[name] / records
    printf "  %-20s %7.2f allocations per record\n", "(process)", total / records
}'
