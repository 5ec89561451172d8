#!/usr/bin/env bash
# Regenerates the committed Swift and C code from proto/.
#
# Usage: scripts/generate-proto.sh [OUTPUT_DIR]
#   OUTPUT_DIR: where to write Sources/CreditProto and Sources/CCreditClient/proto
#   (default: this repository; scripts/check-proto.sh gives a temporary directory).
#
# Needs the generators pinned in scripts/proto-tools.sh: Debian's protoc and
# protoc-c (protobuf-compiler, protobuf-c-compiler), python3 for
# scripts/gen-method-table.py, and protoc-gen-swift, built from the pinned
# swift-protobuf on first use and cached in .build-protoc-gen-swift
# ($PROTOC_GEN_SWIFT overrides). Another version of any of them is an error.
# Every generated file starts with a stamp line that scripts/check-proto.sh
# compares with the .proto it came from.
set -euo pipefail
out=$(realpath -m "${1:-$(dirname "$0")/..}")
[ -n "${PROTOC_GEN_SWIFT:-}" ] && PROTOC_GEN_SWIFT=$(realpath -m "$PROTOC_GEN_SWIFT")
cd "$(dirname "$0")/.."
. scripts/proto-tools.sh

if ! problem=$(check_generators); then
  echo "generate-proto: $problem" >&2
  exit 1
fi
find_plugin >/dev/null  # check_generators ran in a subshell: set PLUGIN here (cached now)

swift_out=$out/Sources/CreditProto
c_out=$out/Sources/CCreditClient/proto
protoc_c_version=${PINNED_PROTOC_C#protobuf-c }

protos=$(cd proto && find . -name '*.proto' | sed 's|^\./||' | sort)
# The C client speaks only the public API; the daemon's internal journal
# format stays out of its library.
c_protos=$(echo "$protos" | grep -v -e '^creditd/journal/' -e '^creditd/test/')

mkdir -p "$swift_out" "$c_out"
rm -f "$swift_out"/*.pb.swift
find "$c_out" -name '*.pb-c.*' -delete
find "$c_out" -mindepth 1 -type d -empty -delete

# Swift: one file per .proto, named after its path.
protoc --plugin=protoc-gen-swift="$PLUGIN" -I proto \
  --swift_opt=Visibility=Public --swift_opt=FileNaming=PathToUnderscores \
  --swift_out="$swift_out" $protos
# C: the same files except the journal, plus google/protobuf/any.proto, which
# status.proto imports.
protoc-c -I proto -I /usr/include --c_out="$c_out" $c_protos google/protobuf/any.proto

stamp() { # file, proto path relative to proto/ (or /usr/include), generator
  local file=$1 src=$2 gen=$3 sum
  if [ -f "proto/$src" ]; then sum=$(sha256sum "proto/$src" | cut -d' ' -f1)
  else sum=$(sha256sum "/usr/include/$src" | cut -d' ' -f1); fi
  { printf '// proto-sha256: %s %s | %s\n' "$sum" "$src" "$gen"; cat "$file"; } > "$file.tmp"
  mv "$file.tmp" "$file"
}
for p in $protos; do
  stamp "$swift_out/$(echo "${p%.proto}" | tr / _).pb.swift" "$p" "protoc-gen-swift $PINNED_SWIFT_PROTOBUF"
done
for p in $c_protos; do
  for ext in c h; do stamp "$c_out/${p%.proto}.pb-c.$ext" "$p" "protobuf-c $protoc_c_version"; done
done
for ext in c h; do stamp "$c_out/google/protobuf/any.pb-c.$ext" google/protobuf/any.proto "protobuf-c $protoc_c_version"; done
# The method table: every rpc of every proto, stamped with the hash of all of them.
table_sum=$(cd proto && cat $protos | sha256sum | cut -d' ' -f1)
python3 scripts/gen-method-table.py proto "$swift_out/method_table.swift" \
  "// proto-sha256: $table_sum method-table | scripts/gen-method-table.py"
echo "generated: $(echo $protos | wc -w) protos and the method table into $out"
