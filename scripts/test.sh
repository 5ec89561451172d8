#!/usr/bin/env bash
# The whole test suite: what CI runs (.ci/run) and what the README gives.
set -euo pipefail
cd "$(dirname "$0")/.."

# CREDITD_TEST_SUMMARY names a file that gets what failed (the step, the failing tests' lines):
# .ci/run prints it again at the very end of its log, where a reader of a long log looks first.
summary=${CREDITD_TEST_SUMMARY:-/dev/null}
current="setup"
step() { current="$*"; printf '\n== %s\n' "$*"; }
trap 'rc=$?; [ "$rc" -eq 0 ] || echo "scripts/test.sh: exit $rc in step: $current" >> "$summary"' EXIT

if ! scripts/install-deps.sh; then
  echo "test: some Debian packages are missing (see above); the tests that need them will fail" >&2
fi

step "generated code is fresh (regenerated with the pinned generators and diffed)"
scripts/check-proto.sh

step "rule ids and document references resolve to docs/"
scripts/check-doc-refs.sh

step "build (no warnings allowed in our code)"
swift build --build-tests 2>&1 | tee /tmp/creditd-build.log | grep -vE "^\[[0-9]+/[0-9]+\]" || true
if grep -E "^/[^ ]*/(Sources|Tests)/[^ ]*: (warning|error):" /tmp/creditd-build.log | grep -v "/.build/"; then
  echo "the build produced warnings or errors in creditd's code" >&2; exit 1
fi
grep -q "Build complete" /tmp/creditd-build.log || { echo "build failed" >&2; exit 1; }

step "manual pages are what the argument parsers make (scripts/generate-man.sh)"
scripts/generate-man.sh > /tmp/creditd-man.log 2>&1 || { cat /tmp/creditd-man.log; exit 1; }
if ! git diff --exit-code --stat -- docs/man; then
  echo "STALE: docs/man differs from the argument parsers' help (run scripts/generate-man.sh and commit)" >&2; exit 1
fi

step "README's sessions print what README shows"
python3 scripts/check-readme.py .build/debug

step "systemd units"
scripts/check-systemd-units.sh .build/debug

step "C client: build, install, example"
scripts/test-c-client.sh

step "swift test"
log=$(mktemp)
set +e
# -v makes --parallel print every test's own output, skips included ("Test Case '...' skipped");
# the terminal gets the progress lines, failures and skips, the log everything.
swift test --skip-build --parallel --num-workers 2 -v 2>&1 | tee "$log" \
  | grep -vE "^Test (Case|Suite) '|^[[:space:]]+Executed [0-9]+ test|^(/opt/swift/usr/bin/|warning: '[^']+': /| \"/usr/bin/ld)|^(Swift|clang) version |^(Target|Thread model|InstalledDir|Found candidate|Selected|Candidate multilib)"
status=${PIPESTATUS[0]}
set -e
# Close with one plain summary line: N passed, N failed, N skipped.
total=$(grep -cE '^\[[0-9]+/[0-9]+\] Testing ' "$log" || true)
failed=$( { grep -oE ': error: [A-Za-z0-9_]+\.[A-Za-z0-9_]+ :' "$log" || true; } | sort -u | wc -l)
skipped=$( { grep -oE "^Test Case '[^']+' skipped" "$log" || true; } | sort -u | wc -l)
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  # No assertion failed, yet the run did: name the tests that started and never finished
  # (a crash or a hang), with the last lines of their output.
  failed=1
  { for name in $(sed -nE 's/^\[[0-9]+\/[0-9]+\] Testing [^.]+\.([A-Za-z0-9_]+)\/([A-Za-z0-9_]+)$/\1.\2/p' "$log"); do
    grep -qE "^Test Case '$name' (passed|skipped|failed)" "$log" || echo "swift-test: $name did not finish"
  done
  grep -nE "Exited with|Fatal error|signal code" "$log" | tail -5 || true; } 2>&1 | tee -a "$summary" >&2
fi
grep -E ': error: [A-Za-z0-9_]+\.[A-Za-z0-9_]+ :' "$log" | head -40 >> "$summary" || true
rm -f "$log"
echo "swift-test: $((total - failed - skipped)) passed, $failed failed, $skipped skipped"
exit "$status"
