#!/usr/bin/env bash
# Every rule id and document reference in the code resolves to a file in the repository:
# - rule ids (P4, L7, X2, A10, ...) cited in Sources/, proto/, scripts/ and Tests/ appear in
#   docs/billing-rules.md;
# - "docs/NAME.md §N" names a file of docs/ that has a section "## N.";
# - the names of documents that are not in the repository are not cited.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
dirs=(Sources proto scripts Tests)
files() { grep -rlE "$1" "${dirs[@]}" --include='*.swift' --include='*.proto' --include='*.sh' \
            --include='*.py' --include='*.c' --include='*.h' | grep -vE '\.pb(-c)?\.|/CreditProto/|scripts/check-doc-refs.sh' || true; }
# Tokens shaped like rule ids that are not rule ids.
not_rules='^(C0)$'
for id in $(files '\b[OMTPCWSLIQEXABFG][0-9]+' | xargs -r grep -hoE "\b[OMTPCWSLIQEXABFG][0-9]+'?" | sort -u); do
    [[ $id =~ $not_rules ]] && continue
    grep -qE "(^|[^A-Za-z0-9])$id([^0-9]|$)" docs/billing-rules.md || { echo "unresolved rule id: $id"; status=1; }
done
while read -r doc section; do
    [ -f "$doc" ] || { echo "missing document: $doc"; status=1; continue; }
    [ -z "$section" ] || grep -qE "^## ${section#§}\. " "$doc" || { echo "no section ${section} in $doc"; status=1; }
done < <(files 'docs/[a-z-]+\.md' | xargs -r grep -hoE 'docs/[a-z-]+\.md( §[0-9]+)?' | sed 's/ / /' | sort -u)
if files 'ttrpc-wire|domain-rules|operations spec|operator guide' | grep -q .; then
    echo "cites a document that is not in the repository:"
    files 'ttrpc-wire|domain-rules|operations spec|operator guide' | xargs grep -nE 'ttrpc-wire|domain-rules|operations spec|operator guide'
    status=1
fi
[ $status -eq 0 ] && echo "doc-refs: every rule id and document reference resolves"
exit $status
