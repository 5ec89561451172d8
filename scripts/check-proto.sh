#!/usr/bin/env bash
# Fails with STALE when a .proto changed without scripts/generate-proto.sh.
# Toolchain-free: it only compares the sha256 stamped on line 1 of every
# generated file with the .proto it names.
set -euo pipefail
cd "$(dirname "$0")/.."
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
[ $status -eq 0 ] && echo "proto: $checked generated files are fresh"
exit $status
