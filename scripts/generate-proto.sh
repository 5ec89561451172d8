#!/usr/bin/env bash
# Regenerates the committed Swift and C code from proto/.
#
# Needs Debian's protoc and protoc-c (protobuf-compiler, protobuf-c-compiler)
# and protoc-gen-swift, built from the pinned swift-protobuf on first use.
# Every generated file starts with a stamp line that scripts/check-proto.sh
# compares with the .proto it came from.
set -euo pipefail
cd "$(dirname "$0")/.."

swift_out=Sources/CreditProto
c_out=Sources/CCreditClient/proto
plugin=${PROTOC_GEN_SWIFT:-}
if [ -z "$plugin" ]; then
  plugin=$(command -v protoc-gen-swift || true)
fi
if [ -z "$plugin" ]; then
  # Build it from the swift-protobuf checkout that `swift build` resolved.
  [ -d .build/checkouts/swift-protobuf ] || swift package resolve
  swift build -c release --package-path .build/checkouts/swift-protobuf \
    --scratch-path .build-protoc-gen-swift --product protoc-gen-swift
  plugin=.build-protoc-gen-swift/release/protoc-gen-swift
fi
protoc_c_version=$(protoc-c --version 2>/dev/null | awk 'NR==1 {print $2}' || true)

protos=$(cd proto && find . -name '*.proto' | sed 's|^\./||' | sort)
# The C client speaks only the public API; the daemon's internal journal
# format stays out of its library.
c_protos=$(echo "$protos" | grep -v -e '^creditd/journal/' -e '^creditd/test/')

rm -f "$swift_out"/*.pb.swift
mkdir -p "$c_out"
find "$c_out" -name '*.pb-c.*' -delete
find "$c_out" -mindepth 1 -type d -empty -delete

# Swift: one file per .proto, named after its path.
protoc --plugin=protoc-gen-swift="$plugin" -I proto \
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
  stamp "$swift_out/$(echo "${p%.proto}" | tr / _).pb.swift" "$p" "protoc-gen-swift 1.39.0"
done
for p in $c_protos; do
  for ext in c h; do stamp "$c_out/${p%.proto}.pb-c.$ext" "$p" "protobuf-c $protoc_c_version"; done
done
for ext in c h; do stamp "$c_out/google/protobuf/any.pb-c.$ext" google/protobuf/any.proto "protobuf-c $protoc_c_version"; done
# The method table: every rpc of every proto, stamped with the hash of all of them.
table_sum=$(cd proto && cat $protos | sha256sum | cut -d' ' -f1)
python3 scripts/gen-method-table.py proto "$swift_out/method_table.swift" \
  "// proto-sha256: $table_sum method-table | scripts/gen-method-table.py"
echo "generated: $(echo $protos | wc -w) protos and the method table"
