#!/usr/bin/env bash
# Monitoring on vs off in one run (as root): a shell loop of 10,000 short processes and a
# CPU-heavy job, each run alternately with --mode audit and --mode off; medians and ratios of
# wall time, the supervisor's peak RSS, and the size of the 10,000-process job's report.
# Goals: short processes <= 1.10x, CPU-heavy <= 1.01x, report < 5 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
target=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p stockade
BIN="$target/$(rustc -vV | sed -n 's/^host: //p')/release/stockade"  # .cargo/config.toml names the target
[ "$(id -u)" -eq 0 ] || { echo "bench/monitor.sh: run as root (the monitor needs the proc connector)" >&2; exit 1; }
command -v /usr/bin/time >/dev/null || { echo "bench/monitor.sh: needs GNU time (scripts/setup.sh installs it)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

SHORT='i=0; while [ $i -lt 10000 ]; do /bin/true; i=$((i+1)); done'
CPU='i=0; while [ $i -lt 4000000 ]; do i=$((i+1)); done'

# One timed run: prints "wall_ms rss_kb".
one() {
  local mode=$1 script=$2 report=${3:-}
  local args=(run --mode "$mode")
  [ -n "$report" ] && args+=(--report "$report")
  local t0 t1
  t0=$(date +%s%N)
  /usr/bin/time -f '%M' -o "$tmp/rss" "$BIN" "${args[@]}" -- sh -c "$script" >/dev/null 2>"$tmp/err" \
    || { echo "bench/monitor.sh: job failed:" >&2; cat "$tmp/err" >&2; exit 1; }
  t1=$(date +%s%N)
  echo "$(( (t1 - t0) / 1000000 )) $(tail -1 "$tmp/rss")"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

bench() {
  local name=$1 script=$2
  : >"$tmp/off" ; : >"$tmp/on"
  for _ in $(seq "$RUNS"); do
    one off "$script" >>"$tmp/off"
    one audit "$script" >>"$tmp/on"
  done
  local off on roff ron
  off=$(cut -d' ' -f1 "$tmp/off" | median); on=$(cut -d' ' -f1 "$tmp/on" | median)
  roff=$(cut -d' ' -f2 "$tmp/off" | median); ron=$(cut -d' ' -f2 "$tmp/on" | median)
  printf '%-22s off %7s ms  on %7s ms  ratio %s   supervisor RSS off %s KiB, on %s KiB\n' \
    "$name" "$off" "$on" "$(awk -v a="$on" -v b="$off" 'BEGIN{printf "%.3f", a/b}')" "$roff" "$ron"
}

echo "stockade monitor benchmark: $RUNS runs each, medians (wall time of the whole stockade run)"
bench "10,000 short processes" "$SHORT"
bench "CPU-heavy" "$CPU"
one audit "$SHORT" "$tmp/report.json" >/dev/null
size=$(stat -c %s "$tmp/report.json")
procs=$(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(len(r['processes']), sum('info-lost' in p.get('flags', []) for p in r['processes']), r['monitor']['events_lost'])" "$tmp/report.json")
echo "report of the 10,000-process job: $size bytes ($(awk -v s="$size" 'BEGIN{printf "%.2f", s/1048576}') MiB); processes, info-lost, events lost: $procs"
