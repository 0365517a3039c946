#!/usr/bin/env bash
# make fuzz: run every fuzz target for FUZZTIME each (default 30s). A crash is written
# under the package's testdata/fuzz/ by go test: commit it as a seed case.
set -euo pipefail
cd "$(dirname "$0")/.."
time=${1:-30s}
for pkg in $(go list ./...); do
  for target in $(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true); do
    echo "== $pkg $target ($time)"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$time" "$pkg"
  done
done
