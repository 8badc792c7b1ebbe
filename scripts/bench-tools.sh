#!/usr/bin/env bash
# What the benchmarks need besides the build: wrk (the load generator), a font for the chart,
# and valgrind (callgrind counts instructions per request). With arguments, only those tools
# (`scripts/bench-tools.sh valgrind`: what make bench-instructions needs).
set -euo pipefail
wanted=("$@")
[ ${#wanted[@]} -eq 0 ] && wanted=(wrk fonts valgrind)
missing=()
for tool in "${wanted[@]}"; do
  case "$tool" in
    wrk) command -v wrk >/dev/null 2>&1 || missing+=(wrk) ;;
    fonts) [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core) ;;
    valgrind) { command -v valgrind >/dev/null 2>&1 && command -v callgrind_control >/dev/null 2>&1; } || missing+=(valgrind) ;;
    *) echo "error: scripts/bench-tools.sh knows wrk, fonts and valgrind, not $tool" >&2; exit 2 ;;
  esac
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null \
    || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
else
  echo "error: install ${missing[*]} (Debian: sudo apt-get install ${missing[*]})" >&2; exit 1
fi
