#!/usr/bin/env bash
# libFuzzer targets of creditd (FUZZING.md).
#
#   scripts/fuzz.sh --ci              build, then fuzz every target for 60 s (FUZZ_SECONDS) from
#                                     a fixed seed (FUZZ_SEED); exit 1 on any crash, hang,
#                                     out-of-memory or sanitizer report
#   scripts/fuzz.sh --long RUNS       fuzz each target for RUNS executions (niced), keeping the
#                                     corpus in .build-fuzz/work/corpus/<target>; resumable
#   scripts/fuzz.sh --build           only build
#   scripts/fuzz.sh --replay FILE...  run one target on saved inputs (FUZZ_TARGETS=FuzzX)
#
# Environment: FUZZ_TARGETS (default: all), FUZZ_SECONDS (ci, default 60), FUZZ_SEED (ci,
# default 1; `random` for a new sequence each run), FUZZ_CONFIG
# (release|debug, default release), FUZZ_TIMEOUT (seconds per input before it counts as a
# hang, default 10), FUZZ_RSS_MB (default 2048).
set -euo pipefail
cd "$(dirname "$0")/.."

ALL_TARGETS="FuzzFrames FuzzDispatch FuzzState"
TARGETS="${FUZZ_TARGETS:-$ALL_TARGETS}"
SECONDS_PER_TARGET="${FUZZ_SECONDS:-60}"
SEED="${FUZZ_SEED:-1}"
CONFIG="${FUZZ_CONFIG:-release}"
TIMEOUT="${FUZZ_TIMEOUT:-10}"
RSS_MB="${FUZZ_RSS_MB:-2048}"
SCRATCH=.build-fuzz
WORK="$SCRATCH/work"
SEEDS=Tests/FuzzCorpus

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

build() {
  local started=$SECONDS target
  for target in $TARGETS; do
    # One -sanitize= value for swiftc: the driver keeps only the last one it is given, so
    # `--sanitize=fuzzer --sanitize=address` would silently drop coverage (docs/operations.md §8).
    swift build -c "$CONFIG" --scratch-path "$SCRATCH" --product "$target" \
      --sanitize=fuzzer -Xswiftc -sanitize=fuzzer,address 2>&1 | grep -vE '^\[[0-9]+/[0-9]+\]' || true
    [ -x "$SCRATCH/$CONFIG/$target" ] || { echo "fuzz: $target did not build" >&2; exit 1; }
  done
  echo "fuzz: built $TARGETS in $((SECONDS - started)) s"
}

# fuzz TARGET CORPUS_DIR LOG [libFuzzer flags...]: runs one target; new inputs go to CORPUS_DIR,
# findings to $WORK/artifacts/TARGET/.
fuzz() {
  local target=$1 corpus=$2 log=$3
  shift 3
  local dict=()
  [ -f "$SEEDS/$target.dict" ] && dict=(-dict="$SEEDS/$target.dict")
  mkdir -p "$corpus" "$WORK/artifacts/$target"
  # Leak checking is off: Swift runtime metadata and NIO singletons live until exit. The Swift
  # backtracer is off: it can spend minutes symbolicating a sanitizer binary after a crash.
  # Deterministic hashing: with it, a seed gives the same sequence of inputs on every run.
  SWIFT_DETERMINISTIC_HASHING=1 SWIFT_BACKTRACE=enable=no ASAN_OPTIONS="detect_leaks=0:${ASAN_OPTIONS:-}" \
    ${NICE:-} "$SCRATCH/$CONFIG/$target" "${dict[@]}" -timeout="$TIMEOUT" -rss_limit_mb="$RSS_MB" \
    -artifact_prefix="$WORK/artifacts/$target/" -print_final_stats=1 "$@" \
    "$corpus" "$SEEDS/$target" >"$log" 2>&1
}

summary() {
  local target=$1 log=$2 status=$3
  local runs units
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1 || true)
  units=$(grep -oE 'corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -1 || true)
  printf 'fuzz: %-13s exit %s, %s executions, %s\n' "$target" "$status" "${runs:-?}" "${units:-corp: ?}"
}

mode=${1:-}
case "$mode" in
  --build)
    build ;;
  --ci)
    build
    failed=0
    for target in $TARGETS; do
      # A fresh corpus each time: CI results do not depend on earlier runs.
      corpus="$WORK/ci-corpus/$target"
      rm -rf "$corpus" "$WORK/artifacts/$target"
      log="$WORK/ci-$target.log"
      status=0
      # A fixed seed makes the CI gate reproducible: the same code meets the same inputs (a
      # slower machine stops earlier in the same sequence), so a finding is never luck of the
      # run. Exploration beyond that sequence is --long's job.
      seed=()
      [ "$SEED" = random ] || seed=(-seed="$SEED")
      fuzz "$target" "$corpus" "$log" "${seed[@]}" -max_total_time="$SECONDS_PER_TARGET" || status=$?
      summary "$target" "$log" "$status"
      if [ "$status" -ne 0 ]; then
        failed=1
        echo "---- $target found a problem (last lines of $log):" >&2
        tail -n 40 "$log" >&2
        ls "$WORK/artifacts/$target/" >&2 || true
      fi
    done
    exit $failed ;;
  --long)
    runs=${2:?"--long needs a number of executions per target"}
    build
    for target in $TARGETS; do
      log="$WORK/long-$target.log"
      started=$SECONDS
      status=0
      # niced and single-process: the machine is shared.
      NICE="nice -n 19" fuzz "$target" "$WORK/corpus/$target" "$log" -runs="$runs" || status=$?
      summary "$target" "$log" "$status"
      echo "fuzz: $target took $((SECONDS - started)) s; corpus $(ls "$WORK/corpus/$target" | wc -l) files"
      [ "$status" -eq 0 ] || exit 1
    done ;;
  --replay)
    shift
    [ $# -gt 0 ] || usage
    for target in $TARGETS; do
      SWIFT_BACKTRACE=enable=no ASAN_OPTIONS="detect_leaks=0:${ASAN_OPTIONS:-}" "$SCRATCH/$CONFIG/$target" -runs=1 "$@"
    done ;;
  *)
    usage ;;
esac
