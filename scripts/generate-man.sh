#!/bin/sh
# Regenerates the manual pages in docs/man/ from the argument parsers of creditd and
# creditctl (swift-argument-parser's generate-manual tool, the engine of its
# `swift package plugin generate-manual`). Run it after changing a flag or a help text and
# commit the result. The date is pinned so that an unchanged parser gives unchanged pages.
set -eu
cd "$(dirname "$0")/.."
date=${MAN_DATE:-2026-12-03}
swift build --product creditd >&2
swift build --product creditctl >&2
swift build --product generate-manual >&2
bin=$(swift build --show-bin-path)
mkdir -p docs/man
for tool in creditd creditctl; do
    "$bin/generate-manual" "$bin/$tool" --date "$date" --section 1 --output-directory docs/man
done
ls docs/man
