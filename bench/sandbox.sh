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
bin=$PWD/target/release/stockade
out=bench/out; mkdir -p "$out"
state=/var/lib/stockade-bench; mkdir -p "$state"

cmds=(
  "/bin/true"
  "$bin run --state-dir $state -- /bin/true"
  "bwrap --unshare-all --die-with-parent --new-session --cap-drop ALL --ro-bind / / --proc /proc --dev /dev --tmpfs /tmp /bin/true"
)
names=(bare stockade bwrap)
if docker info >/dev/null 2>&1; then
  docker image inspect busybox >/dev/null 2>&1 || docker pull -q busybox >/dev/null 2>&1 || true
  if docker image inspect busybox >/dev/null 2>&1; then
    cmds+=("docker run --rm --network none busybox true"); names+=(docker)
  fi
else
  echo "docker: no engine answers here (docker info failed); the docker ratio is not measured"
fi

args=()
for i in "${!cmds[@]}"; do args+=(-n "${names[$i]}" "${cmds[$i]}"); done
hyperfine -N --warmup 20 --runs "$runs" --export-json "$out/startup.json" "${args[@]}" >/dev/null

python3 - "$out/startup.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
med = {k: v["median"] * 1000 for k, v in r.items()}
for k, v in med.items():
    print(f"start-up median {k:9s} {v:8.3f} ms")
s = med["stockade"]
print(f"stockade / bwrap  = {s / med['bwrap']:.2f}x  (goal <= 1.0x)")
if "docker" in med:
    print(f"stockade / docker = {s / med['docker']:.3f}x (goal <= 0.05x)")
PY

# CPU-heavy job: compile a generated C program, bare and in the sandbox.
src=$state/cpu.c
python3 - "$src" <<'PY'
import sys
fns = "\n".join(f"int f{i}(int x){{int s=0;for(int j=0;j<x;j++)s+=j*{i}%7;return s;}}" for i in range(3000))
open(sys.argv[1], "w").write(fns + "\nint main(){return f1(3)&0;}\n")
PY
chmod 644 "$src"
hyperfine -N --warmup 1 --runs 5 --export-json "$out/cpu.json" \
  -n bare "gcc -O2 -c $src -o /dev/null" \
  -n stockade "$bin run --state-dir $state --bind $src -- gcc -O2 -c $src -o /dev/null" >/dev/null
python3 - "$out/cpu.json" <<'PY'
import json, sys
r = {x["command"]: x["median"] for x in json.load(open(sys.argv[1]))["results"]}
print(f"cpu-heavy job (gcc -O2, 3000 functions): bare {r['bare']:.2f} s, stockade {r['stockade']:.2f} s, ratio {r['stockade']/r['bare']:.3f}x (goal <= 1.03x)")
PY

# Supervisor peak RSS (stockade itself, the largest of its waited-for processes).
rss=$( { /usr/bin/time -v "$bin" run --state-dir "$state" -- /bin/true; } 2>&1 | awk -F: '/Maximum resident/{print $2}' | tr -d ' ')
echo "supervisor peak RSS: $((rss / 1024)) MiB ($rss KiB; goal <= 10 MiB)"
