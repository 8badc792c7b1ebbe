#!/usr/bin/env bash
# Rewrites the README's settings table (between the settings markers) from `origin env`, the
# list config.rs reads. `origin/tests/readme.rs` fails when the two differ.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q -p origin
table="$(target/debug/origin env)"
python3 - "$table" <<'PY'
import sys
table = sys.argv[1] + "\n"
s = open("README.md").read()
begin, end = "<!-- settings:begin -->\n", "<!-- settings:end -->"
a = s.index(begin) + len(begin)
b = s.index(end)
open("README.md", "w").write(s[:a] + table + s[b:])
PY
