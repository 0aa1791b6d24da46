#!/bin/sh
# docs/isa.md is generated from include/polymorph/isa_table.h by
# tools/gen_isa_doc.c; fail (with the diff) when the committed copy is stale.
BUILD=${BUILD:-build}
gen="$BUILD/tools/gen_isa_doc"
if [ ! -x "$gen" ]; then echo "check_isa_doc: $gen is missing (run make first)"; exit 1; fi
tmp=$(mktemp) || exit 1
trap 'rm -f "$tmp"' EXIT
"$gen" > "$tmp" || { echo "check_isa_doc: $gen failed"; exit 1; }
if ! diff -u docs/isa.md "$tmp"; then
  echo "check_isa_doc: docs/isa.md is stale; regenerate with: $gen > docs/isa.md"
  exit 1
fi
