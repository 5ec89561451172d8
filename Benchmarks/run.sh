#!/bin/sh
# Builds the release creditd and creditbench, then runs the whole benchmark: every figure with
# its ratio to the baselines of the same run. Extra arguments go to creditbench, e.g.
#   Benchmarks/run.sh --json > results.json
#   Benchmarks/run.sh --only scale --scale 10000,100000,1000000
set -eu
cd "$(dirname "$0")/.."
# Build output goes to stderr: with --json, stdout carries the JSON document and nothing else.
swift build -c release --product creditd >&2
swift build -c release --product creditctl >&2
swift build -c release --product creditbench >&2
exec .build/release/creditbench "$@"
