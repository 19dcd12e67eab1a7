#!/usr/bin/env bash
# Benchmark of `stockade run` start-up and overhead against its peers, in one run (issue 2).
# Prints medians and ratios; the machine is shared and noisy, so compare ratios, not seconds.
# Usage: bash bench/sandbox.sh [RUNS]   (as root; installs hyperfine and bubblewrap if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-200}
need=()
command -v hyperfine >/dev/null || need+=(hyperfine)
command -v bwrap >/dev/null || need+=(bubblewrap)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then apt-get install -y -qq "${need[@]}" >/dev/null; fi
cargo build --release -q -p stockade
bin=${CARGO_TARGET_DIR:-$PWD/target}/$(rustc -vV | sed -n 's/^host: //p')/release/stockade  # .cargo/config.toml names the target
out=bench/out; mkdir -p "$out"
state=/var/lib/stockade-bench; mkdir -p "$state"

cmds=(
  "/bin/true"
  "$bin run --state-dir $state -- /bin/true"
  "$bin run --state-dir $state --mode off -- /bin/true"
  "bwrap --unshare-all --die-with-parent --new-session --cap-drop ALL --ro-bind / / --proc /proc --dev /dev --tmpfs /tmp /bin/true"
)
names=(bare stockade stockade-mode-off bwrap)
args=()
for i in "${!cmds[@]}"; do args+=(-n "${names[$i]}" "${cmds[$i]}"); done
hyperfine -N --warmup 20 --runs "$runs" --export-json "$out/startup.json" "${args[@]}" >/dev/null

# Docker: Debian's engine, installed if missing and started for this run if not running, with a
# one-binary image made from the host's /bin/true (no registry needed). BENCH_DOCKER=0 skips it.
docker_bin=/usr/bin/docker
rm -f "$out/docker.json"
started_dockerd=""
stop_dockerd() { if [ -n "$started_dockerd" ]; then kill "$started_dockerd" 2>/dev/null; wait "$started_dockerd" 2>/dev/null || true; fi; }
trap stop_dockerd EXIT
if [ "${BENCH_DOCKER:-1}" = 1 ]; then
  command -v dockerd >/dev/null || apt-get install -y -qq docker.io >/dev/null || true
  if command -v dockerd >/dev/null && ! "$docker_bin" info >/dev/null 2>&1; then
    dockerd >"$out/dockerd.log" 2>&1 &
    started_dockerd=$!
    for _ in $(seq 150); do "$docker_bin" info >/dev/null 2>&1 && break; sleep 0.2; done
  fi
  if "$docker_bin" info >/dev/null 2>&1; then
    if ! "$docker_bin" image inspect stockade-bench-true:1 >/dev/null 2>&1; then
      img=$(mktemp -d)
      for f in /usr/bin/true $(ldd /usr/bin/true | grep -o '/[^ ]*'); do
        mkdir -p "$img$(dirname "$f")"; cp -L "$f" "$img$f"
      done
      tar -C "$img" -c . | "$docker_bin" import - stockade-bench-true:1 >/dev/null
      rm -rf "$img"
    fi
    hyperfine -N --warmup 3 --runs "${DOCKER_RUNS:-20}" --export-json "$out/docker.json" \
      -n docker "$docker_bin run --rm --network none stockade-bench-true:1 /usr/bin/true" >/dev/null
  else
    echo "docker: no engine answers here (docker info failed); the docker ratio is not measured"
  fi
fi

python3 - "$out/startup.json" "$out/docker.json" <<'PY'
import json, os, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
if os.path.exists(sys.argv[2]) and "docker" not in r:
    r.update({x["command"]: x for x in json.load(open(sys.argv[2]))["results"]})
med = {k: v["median"] * 1000 for k, v in r.items()}
for k, v in med.items():
    print(f"start-up median {k:18s} {v:8.3f} ms")
for k in ("stockade", "stockade-mode-off"):
    s = med[k]
    print(f"{k} / bwrap  = {s / med['bwrap']:.2f}x  (goal <= 1.0x)")
    if "docker" in med:
        print(f"{k} / docker = {s / med['docker']:.3f}x (goal <= 0.05x)")
PY

# CPU-heavy job: compile a generated C program, bare and in the sandbox.
src=$state/cpu.c
python3 - "$src" <<'PY'
import sys
fns = "\n".join(f"int f{i}(int x){{int s=0;for(int j=0;j<x;j++)s+=j*{i}%7;return s;}}" for i in range(3000))
open(sys.argv[1], "w").write(fns + "\nint main(){return f1(3)&0;}\n")
PY
chmod 644 "$src"
# Alternating bare and sandboxed runs: on a shared machine the load drifts over minutes, and
# all-bare-then-all-sandboxed runs measure the drift as much as the sandbox.
cpu_runs=${CPU_RUNS:-5}
: >"$out/cpu.tsv"
for _ in $(seq "$cpu_runs"); do
  for who in bare stockade; do
    start=$(date +%s%N)
    if [ "$who" = bare ]; then
      gcc -O2 -c "$src" -o /dev/null
    else
      "$bin" run --state-dir "$state" --bind "$src" -- gcc -O2 -c "$src" -o /dev/null
    fi
    printf '%s\t%s\n' "$who" "$(($(date +%s%N) - start))" >>"$out/cpu.tsv"
  done
done
python3 - "$out/cpu.tsv" <<'PY'
import statistics, sys
t = {}
for line in open(sys.argv[1]):
    who, s = line.split()
    t.setdefault(who, []).append(int(s) / 1e9)
b, s = statistics.median(t["bare"]), statistics.median(t["stockade"])
pairs = [y / x for x, y in zip(t["bare"], t["stockade"])]
print(f"cpu-heavy job (gcc -O2, 3000 functions, {len(pairs)} alternating pairs): bare {b:.2f} s, "
      f"stockade {s:.2f} s, ratio of medians {s / b:.3f}x, median of pair ratios {statistics.median(pairs):.3f}x (goal <= 1.03x)")
PY

# Supervisor peak RSS (stockade itself, the largest of its waited-for processes).
rss=$( { /usr/bin/time -v "$bin" run --state-dir "$state" -- /bin/true; } 2>&1 | awk -F: '/Maximum resident/{print $2}' | tr -d ' ')
echo "supervisor peak RSS: $((rss / 1024)) MiB ($rss KiB; goal <= 10 MiB)"
