#!/usr/bin/env bash
# Fails with STALE when the committed generated code is not what the pinned
# generators (scripts/proto-tools.sh) make of proto/.
#
# Usage: scripts/check-proto.sh [--stamps-only]
#
# 1. Stamps (toolchain-free, instant): the sha256 stamped on line 1 of every
#    generated file must be that of the .proto it names.
# 2. Regeneration (as grpc-swift's check-generated-code.sh): run
#    scripts/generate-proto.sh into a temporary directory and diff it with the
#    committed files, so hand edits, a changed generator or a changed
#    scripts/gen-method-table.py show too. Needs the pinned protoc, protoc-c,
#    python3 and protoc-gen-swift; the plugin is built once (~5 minutes from
#    cold) and cached in .build-protoc-gen-swift.
#
# When step 2 cannot run (a generator missing or at another version) the
# script says so and passes on the stamps alone, unless
# CREDITD_PROTO_CHECK=full (CI sets it), which makes that an error.
# --stamps-only (or CREDITD_PROTO_CHECK=stamps) stops after step 1.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/proto-tools.sh

mode=${CREDITD_PROTO_CHECK:-auto}
[ "${1:-}" = --stamps-only ] && mode=stamps

# ---- 1. stamps
status=0
checked=0
protos=$(cd proto && find . -name '*.proto' | sed 's|^\./||' | sort)
for p in $protos; do
  want=$(sha256sum "proto/$p" | cut -d' ' -f1)
  files="Sources/CreditProto/$(echo "${p%.proto}" | tr / _).pb.swift"
  # The C client leaves out the internal journal format (see generate-proto.sh).
  case "$p" in
    creditd/journal/*|creditd/test/*) ;;
    *) files="$files Sources/CCreditClient/proto/${p%.proto}.pb-c.c Sources/CCreditClient/proto/${p%.proto}.pb-c.h" ;;
  esac
  for f in $files; do
    checked=$((checked + 1))
    if [ ! -f "$f" ]; then echo "STALE: $f is missing (run scripts/generate-proto.sh)"; status=1; continue; fi
    got=$(head -1 "$f" | sed -n 's|^// proto-sha256: \([0-9a-f]*\) .*|\1|p')
    if [ "$got" != "$want" ]; then echo "STALE: $f was generated from another version of proto/$p (run scripts/generate-proto.sh)"; status=1; fi
  done
done
# The method table comes from all of them together.
table_sum=$(cd proto && cat $protos | sha256sum | cut -d' ' -f1)
checked=$((checked + 1))
got=$(head -1 Sources/CreditProto/method_table.swift 2>/dev/null | sed -n 's|^// proto-sha256: \([0-9a-f]*\) .*|\1|p')
if [ "$got" != "$table_sum" ]; then echo "STALE: Sources/CreditProto/method_table.swift (run scripts/generate-proto.sh)"; status=1; fi
# Generated files whose .proto is gone.
for f in Sources/CreditProto/*.pb.swift $(find Sources/CCreditClient/proto -name '*.pb-c.[ch]' | sort); do
  src=$(head -1 "$f" | awk '{print $4}')
  case "$src" in google/protobuf/*) continue ;; esac  # from /usr/include
  [ -f "proto/$src" ] || { echo "STALE: $f comes from proto/$src, which no longer exists"; status=1; }
  case "$f:$src" in
    Sources/CCreditClient/*:creditd/journal/*) echo "STALE: $f is internal and must not be in the C client (run scripts/generate-proto.sh)"; status=1 ;;
  esac
done
[ $status -eq 0 ] || exit $status
echo "proto: stamps of $checked generated files match proto/"

# ---- 2. regeneration
if [ "$mode" = stamps ]; then
  echo "proto: regeneration check skipped (--stamps-only): only the stamps were checked"
  exit 0
fi
if ! problem=$(check_generators); then
  if [ "$mode" = full ]; then
    echo "proto: cannot regenerate: $problem (CREDITD_PROTO_CHECK=full)"
    exit 1
  fi
  echo "proto: regeneration check skipped: $problem; only the stamps were checked"
  exit 0
fi
find_plugin >/dev/null
scratch=$(mktemp -d /tmp/creditd-proto-check-XXXXXX)
trap 'rm -rf "$scratch"' EXIT
PROTOC_GEN_SWIFT=$PLUGIN scripts/generate-proto.sh "$scratch" >/dev/null

# Compare the generated files only (Sources/CreditProto also holds MethodDescriptor.swift).
generated_list() { # root
  (cd "$1" && { ls Sources/CreditProto/*.pb.swift Sources/CreditProto/method_table.swift 2>/dev/null
                find Sources/CCreditClient/proto -type f 2>/dev/null; } | sort)
}
if ! diff -u <(generated_list .) <(generated_list "$scratch") | sed 's|^|  |' > "$scratch/files.diff"; then
  echo "STALE: the generated files are not the ones the generators make (- committed, + regenerated):"
  grep '^  [-+][^-+]' "$scratch/files.diff"
  status=1
fi
regenerated=0
for f in $(generated_list "$scratch"); do
  [ -f "$f" ] || continue
  regenerated=$((regenerated + 1))
  if ! diff -u --label "committed/$f" --label "regenerated/$f" "$f" "$scratch/$f"; then
    echo "STALE: $f differs from what the pinned generators make of proto/ (run scripts/generate-proto.sh)"
    status=1
  fi
done
[ $status -eq 0 ] || exit $status
echo "proto: $regenerated generated files are byte for byte what protoc ($PINNED_PROTOC), protoc-c ($PINNED_PROTOC_C), protoc-gen-swift $PINNED_SWIFT_PROTOBUF and scripts/gen-method-table.py make"
