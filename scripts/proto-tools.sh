# Sourced by scripts/generate-proto.sh and scripts/check-proto.sh (not run by itself).
#
# The generators of the committed code in Sources/CreditProto and
# Sources/CCreditClient/proto, pinned: another version writes other code, so
# both scripts refuse to use one. A change of pin is a change of the
# committed code: bump the version here, regenerate, commit both.
PINNED_PROTOC="libprotoc 3.21.12"          # Debian's protobuf-compiler (bookworm)
PINNED_PROTOC_C="protobuf-c 1.4.1"         # Debian's protobuf-c-compiler (bookworm)
PINNED_SWIFT_PROTOBUF="1.39.0"             # = Package.swift's swift-protobuf `exact:`
# scripts/gen-method-table.py is versioned with the repository: the check runs
# the committed script, so a change to it without regenerating shows as a diff.

# Where the plugin is built and cached (.build-* is gitignored); CI keeps it
# between runs if it keeps the workspace.
PLUGIN_SCRATCH=.build-protoc-gen-swift
PLUGIN_CACHED=$PLUGIN_SCRATCH/release/protoc-gen-swift

# Every function prints why it fails on stdout and returns 1; callers decide
# whether that is fatal. Run from the repository root.

tool_version_is() { # label, expected, actual
  if [ "$3" != "$2" ]; then
    echo "$1 is '${3:-missing}', pinned '$2'"
    return 1
  fi
}

check_protoc() {
  command -v protoc >/dev/null || { echo "protoc not found (apt-get install protobuf-compiler)"; return 1; }
  tool_version_is protoc "$PINNED_PROTOC" "$(protoc --version 2>/dev/null | head -1)"
}

check_protoc_c() {
  command -v protoc-c >/dev/null || { echo "protoc-c not found (apt-get install protobuf-c-compiler)"; return 1; }
  tool_version_is protoc-c "$PINNED_PROTOC_C" "$(protoc-c --version 2>/dev/null | head -1)"
}

check_python() {
  command -v python3 >/dev/null || { echo "python3 not found (scripts/gen-method-table.py)"; return 1; }
}

# The version Package.swift pins must be the one this file pins.
check_package_pin() {
  local pin
  pin=$(sed -n 's|.*github.com/apple/swift-protobuf", exact: "\([0-9.]*\)".*|\1|p' Package.swift)
  tool_version_is "Package.swift's swift-protobuf" "$PINNED_SWIFT_PROTOBUF" "$pin"
}

check_plugin() { # path
  [ -x "$1" ] || { echo "protoc-gen-swift not found at $1"; return 1; }
  tool_version_is "$1" "protoc-gen-swift $PINNED_SWIFT_PROTOBUF" "$("$1" --version 2>/dev/null | head -1)"
}

# Builds protoc-gen-swift from the swift-protobuf checkout `swift package resolve`
# makes (at the Package.swift pin) into $PLUGIN_SCRATCH. ~5 minutes from cold on
# two cores, seconds when cached.
build_plugin() {
  command -v swift >/dev/null || { echo "swift not found: cannot build protoc-gen-swift"; return 1; }
  local checkout=.build/checkouts/swift-protobuf tag
  if [ ! -d "$checkout" ]; then
    swift package resolve >&2 || { echo "swift package resolve failed"; return 1; }
  fi
  tag=$(git -C "$checkout" describe --tags --exact-match 2>/dev/null || true)
  tool_version_is "the swift-protobuf checkout ($checkout)" "$PINNED_SWIFT_PROTOBUF" "$tag" || return 1
  echo "building protoc-gen-swift $PINNED_SWIFT_PROTOBUF into $PLUGIN_SCRATCH (minutes from cold, cached afterwards)" >&2
  swift build -c release --package-path "$checkout" --scratch-path "$PLUGIN_SCRATCH" \
    --product protoc-gen-swift >&2 || { echo "building protoc-gen-swift failed"; return 1; }
}

# Sets PLUGIN to a protoc-gen-swift of the pinned version: $PROTOC_GEN_SWIFT if
# set, else the cached build, else one on PATH, else a fresh build (unless
# $1 is "no-build").
find_plugin() {
  if [ -n "${PROTOC_GEN_SWIFT:-}" ]; then
    PLUGIN=$PROTOC_GEN_SWIFT
    check_plugin "$PLUGIN"
    return
  fi
  if check_plugin "$PLUGIN_CACHED" >/dev/null; then PLUGIN=$PLUGIN_CACHED; return 0; fi
  local on_path
  on_path=$(command -v protoc-gen-swift || true)
  if [ -n "$on_path" ] && check_plugin "$on_path" >/dev/null; then PLUGIN=$on_path; return 0; fi
  if [ "${1:-}" = no-build ]; then
    echo "no protoc-gen-swift $PINNED_SWIFT_PROTOBUF cached in $PLUGIN_SCRATCH, on PATH or in \$PROTOC_GEN_SWIFT"
    return 1
  fi
  build_plugin || return 1
  PLUGIN=$PLUGIN_CACHED
  check_plugin "$PLUGIN"
}

# All generators present and at their pins; sets PLUGIN. Prints the first problem.
check_generators() { # [no-build]
  check_package_pin && check_protoc && check_protoc_c && check_python && find_plugin "${1:-}"
}
