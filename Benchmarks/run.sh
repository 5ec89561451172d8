#!/bin/sh
# Builds the release creditd and creditbench, then runs the whole benchmark: every figure with
# its ratio to the baselines of the same run. Extra arguments go to creditbench, e.g.
#   Benchmarks/run.sh --json > results.json
#   Benchmarks/run.sh --only scale --scale 10000,100000,1000000
set -eu
cd "$(dirname "$0")/.."
swift build -c release --product creditd
swift build -c release --product creditbench
exec .build/release/creditbench "$@"
