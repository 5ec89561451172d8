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
# generate-manual writes `.Ex -std` ("0 on success, >0 if an error occurs"); both tools have
# codes of their own (docs/operations.md §2, §3, §7), which the pages state instead.
exit_status() {
    python3 - "$1" "$2" <<'PY'
import sys
page, text = sys.argv[1], sys.argv[2]
source = open(page).read()
# The page ends with the macro, with or without a newline.
assert source.rstrip("\n").endswith(".Ex -std"), page
open(page, "w").write(source.rstrip("\n")[:-len(".Ex -std")] + text)
PY
}
exit_status docs/man/creditd.1 '0 after a clean stop (SIGTERM or SIGINT: calls drained, final snapshot written).
.Pp
1 when it cannot start or serve: a bad configuration, a socket it cannot take, a state directory
it refuses (see verify-state and --repair), or a failure while running.
.Pp
.Nm verify-state
exits 0 when the state directory would start as it is and 1 when it would not.
.Pp
64 for a command line it cannot parse.
'
exit_status docs/man/creditctl.1 'Ordinary commands: 0 ok; 1 the call failed with another status; 2 usage error; 69 unavailable
(socket missing or refused, UNAVAILABLE, connect timeout); 75 timeout (DEADLINE_EXCEEDED after
connecting); 77 permission denied (EACCES, PERMISSION_DENIED, UNAUTHENTICATED).
.Pp
.Em health :
0 SERVING; 1 invalid arguments; 2 connection failed or timed out connecting; 3 RPC failed
(DEADLINE_EXCEEDED included); 4 answered but not SERVING.
.Pp
.Em check
(and check_creditd): 0 OK; 1 WARNING; 2 CRITICAL; 3 UNKNOWN (bad arguments, --help, --version
included).
.Pp
.Em import :
65 when the file has bad lines, those the daemon would refuse included (nothing is written); otherwise 0
when no subscription failed and 1 when one did; a lost connection or writes refused by the
daemon stop it with the code of that status (69 for UNAVAILABLE); 66 when the file cannot be
read.
.Pp
.Em export :
73 when the -o file cannot be created (checked before connecting); 74 when a write fails on the
way (a full disk), the previous file being kept.
'
ls docs/man
