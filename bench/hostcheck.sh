#!/usr/bin/env bash
# Benchmark: `stockade host-check` (release build) against its peer `lynis audit system --quick`
# on this host, in one run: several runs each, interleaved, then medians, the ratio, peak RSS.
# Goal: host-check at most 0.05x Lynis's wall time, and under 300 ms on its own.
#   usage: bash bench/hostcheck.sh            (RUNS=7 LYNIS_RUNS=3 by default; as root, like CI)
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-7}
LYNIS_RUNS=${LYNIS_RUNS:-3}
TIME=/usr/bin/time
command -v lynis >/dev/null || { echo "bench: lynis is not installed (bash scripts/setup.sh)" >&2; exit 1; }
[ -x "$TIME" ] || { echo "bench: GNU time (/usr/bin/time) is needed for peak RSS" >&2; exit 1; }

cargo build --release -p stockade --locked -q
BIN=${CARGO_TARGET_DIR:-target}/$(rustc -vV | sed -n 's/^host: //p')/release/stockade  # .cargo/config.toml names the target

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One measured run: wall milliseconds (from the clock, finer than time's 10 ms) and peak RSS in
# KiB (GNU time: the largest process of the tree) appended to $1. The command's exit code is not
# an error: host-check exits 1 when checks fail.
measure() {
  local out=$1; shift
  local t0 t1
  t0=$(date +%s%N)
  "$TIME" -f "%M" -o "$work/t" "$@" >"$work/stdout" 2>"$work/stderr" || true
  t1=$(date +%s%N)
  echo "$(( (t1 - t0) / 1000000 )) $(tail -n 1 "$work/t")" >>"$out"
}

median() { # column $2 of file $1
  sort -n -k"$2","$2" "$1" | awk -v c="$2" '{v[NR]=$c} END {m=int((NR+1)/2); if (NR%2) print v[m]; else print (v[m]+v[m+1])/2}'
}

echo "host-check: $BIN ($RUNS runs); lynis $(lynis --version) ($LYNIS_RUNS runs); $(nproc) CPUs"
"$BIN" host-check >/dev/null || true # warm the page cache for both, once
for i in $(seq 1 "$RUNS"); do
  measure "$work/hc" "$BIN" host-check
  if [ "$i" -le "$LYNIS_RUNS" ]; then
    # Lynis writes a log and a report; keep them out of /var/log.
    measure "$work/ly" lynis audit system --quick --no-colors --logfile "$work/lynis.log" --report-file "$work/lynis.dat"
  fi
done

hc=$(median "$work/hc" 1); hc_rss=$(median "$work/hc" 2)
ly=$(median "$work/ly" 1); ly_rss=$(median "$work/ly" 2)
echo "runs (ms KiB): host-check: $(tr '\n' ';' <"$work/hc")"
echo "runs (ms KiB): lynis:      $(tr '\n' ';' <"$work/ly")"
awk -v hc="$hc" -v ly="$ly" -v hr="$hc_rss" -v lr="$ly_rss" 'BEGIN {
  printf "median wall: host-check %d ms, lynis %d ms; ratio %.4fx (goal <= 0.05x)\n", hc, ly, hc / ly
  printf "median peak RSS (largest process): host-check %.1f MiB, lynis %.1f MiB\n", hr / 1024, lr / 1024
  printf "host-check alone: %s (goal < 300 ms)\n", (hc < 300 ? "met" : "NOT met")
}'
