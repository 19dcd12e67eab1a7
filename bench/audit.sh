#!/usr/bin/env bash
# Benchmark of `stockade audit` (release build) against its peers, in one run, on the same files:
# zizmor --offline on the GitHub workflows, checkov on what it reads (github_actions, kubernetes,
# gitlab_ci); a 10,000-file tree made of corpus copies; peak RSS of each. Prints medians and ratios.
# Usage: bash bench/audit.sh   (RUNS=N for more runs; CORPUS=dir for another corpus)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CORPUS=${CORPUS:-$ROOT/../shared/corpus}
RUNS=${RUNS:-7}
SLOW_RUNS=${SLOW_RUNS:-3}
OUT=$ROOT/bench/out/audit
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/$(rustc -vV | sed -n 's/^host: //p')/release/stockade  # .cargo/config.toml names the target

[ -d "$CORPUS" ] || { echo "bench: no corpus at $CORPUS" >&2; exit 2; }

# --- tools (installed only when missing) -------------------------------------------------------
need_apt=()
command -v hyperfine >/dev/null || need_apt+=(hyperfine)
[ -x /usr/bin/time ] || need_apt+=(time)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if ! command -v zizmor >/dev/null; then
  python3 -m pip install -q zizmor==1.32.0
fi
CHECKOV=$ROOT/bench/out/checkov-venv/bin/checkov
if [ ! -x "$CHECKOV" ]; then
  echo "bench: installing checkov into bench/out/checkov-venv (large, takes minutes)" >&2
  python3 -m venv "$ROOT/bench/out/checkov-venv"
  "$ROOT/bench/out/checkov-venv/bin/pip" install -q checkov
fi

cargo build --release -p stockade --locked >&2

# --- inputs: the same files for every tool -----------------------------------------------------
rm -rf "$OUT" && mkdir -p "$OUT"
WF=$OUT/workflows                      # the 567 real workflows, where zizmor and checkov look
mkdir -p "$WF/.github/workflows"
cp "$CORPUS"/workflows/* "$WF/.github/workflows/"
K8S=$OUT/k8s                           # ARC manifests and values: Kubernetes YAML
mkdir -p "$K8S" && cp "$CORPUS"/arc/* "$K8S/"
GL=$OUT/gitlab                         # .gitlab-ci.yml and its includes
mkdir -p "$GL" && cp "$CORPUS"/gitlab_ci/* "$GL/"
cp "$CORPUS"/gitlab_ci/NVIDIA__Megatron-LM__.gitlab-ci.yml "$GL/.gitlab-ci.yml"
ALL=$OUT/all                           # the whole corpus, every kind
cp -r "$CORPUS" "$ALL"
BIG=$OUT/big                           # 10,000 files: the corpus copied over and over
mkdir -p "$BIG"
mapfile -t files < <(cd "$CORPUS" && find . -type f ! -name '*.md' ! -name '*.tsv' | sort)
n=0
copy=0
while [ $n -lt 10000 ]; do
  for f in "${files[@]}"; do
    [ $n -ge 10000 ] && break
    d="$BIG/c$copy/$(dirname "$f")"
    mkdir -p "$d"
    cp "$CORPUS/$f" "$d/"
    n=$((n + 1))
  done
  copy=$((copy + 1))
done
echo "inputs: $(find "$WF" -type f | wc -l) workflows, $(find "$K8S" -type f | wc -l) k8s/ARC, $(find "$GL" -type f | wc -l) gitlab-ci, $(find "$BIG" -type f | wc -l) files in the large tree ($(du -sh "$BIG" | cut -f1))"

# --- timing --------------------------------------------------------------------------------------
# Exit codes 1 mean "findings" for every tool here, so failures are ignored (-i); output is discarded.
median() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['results'][0]['median'])" "$1"; }
bench() { # name runs command...
  local name=$1 runs=$2; shift 2
  hyperfine -N -i -w 1 -r "$runs" --export-json "$OUT/$name.json" --output=null "$*" >/dev/null 2>&1 \
    || hyperfine -i -w 1 -r "$runs" --export-json "$OUT/$name.json" --output=null "$*" >/dev/null
  median "$OUT/$name.json"
}
rss_mib() { # command... -> peak RSS in MiB
  /usr/bin/time -v "$@" >/dev/null 2>"$OUT/time.txt" || true
  awk -F: '/Maximum resident set size/ {printf "%.1f", $2/1024}' "$OUT/time.txt"
}

echo "running (stockade and zizmor: $RUNS runs; checkov: $SLOW_RUNS runs) ..."
s_wf=$(bench stockade-wf "$RUNS" "$BIN" audit "$WF")
z_wf=$(bench zizmor-wf "$RUNS" zizmor --offline --no-progress --format json "$WF")
c_wf=$(bench checkov-wf "$SLOW_RUNS" "$CHECKOV" -d "$WF" --framework github_actions --quiet --compact -o json)
s_k8s=$(bench stockade-k8s "$RUNS" "$BIN" audit "$K8S")
c_k8s=$(bench checkov-k8s "$SLOW_RUNS" "$CHECKOV" -d "$K8S" --framework kubernetes --quiet --compact -o json)
s_gl=$(bench stockade-gl "$RUNS" "$BIN" audit "$GL")
c_gl=$(bench checkov-gl "$SLOW_RUNS" "$CHECKOV" -d "$GL" --framework gitlab_ci --quiet --compact -o json)
s_all=$(bench stockade-all "$RUNS" "$BIN" audit "$ALL")
s_big=$(bench stockade-big "$RUNS" "$BIN" audit "$BIG")

r_s_wf=$(rss_mib "$BIN" audit "$WF")
r_z_wf=$(rss_mib zizmor --offline --no-progress --format json "$WF")
r_c_wf=$(rss_mib "$CHECKOV" -d "$WF" --framework github_actions --quiet --compact -o json)
r_s_big=$(rss_mib "$BIN" audit "$BIG")

python3 - "$s_wf" "$z_wf" "$c_wf" "$s_k8s" "$c_k8s" "$s_gl" "$c_gl" "$s_all" "$s_big" \
  "$r_s_wf" "$r_z_wf" "$r_c_wf" "$r_s_big" "$(nproc)" <<'EOF'
import sys
(s_wf, z_wf, c_wf, s_k8s, c_k8s, s_gl, c_gl, s_all, s_big) = map(float, sys.argv[1:10])
r_s_wf, r_z_wf, r_c_wf, r_s_big = map(float, sys.argv[10:14])
cores = sys.argv[14]
ms = lambda s: f"{s * 1000:8.1f} ms"
print()
print(f"median wall time ({cores} cores)           stockade      peer         ratio  goal")
print(f"workflows vs zizmor --offline      {ms(s_wf)} {ms(z_wf)} {z_wf / s_wf:7.1f}x  >=10x")
print(f"workflows vs checkov github_actions{ms(s_wf)} {ms(c_wf)} {c_wf / s_wf:7.1f}x  >=100x")
print(f"ARC/k8s vs checkov kubernetes      {ms(s_k8s)} {ms(c_k8s)} {c_k8s / s_k8s:7.1f}x  >=100x")
print(f"gitlab-ci vs checkov gitlab_ci     {ms(s_gl)} {ms(c_gl)} {c_gl / s_gl:7.1f}x  >=100x")
print(f"whole corpus (every kind)          {ms(s_all)}")
print(f"10,000 files                       {ms(s_big)}   goal < 1000 ms: {'met' if s_big < 1 else 'MISSED'}")
print()
print("peak RSS                            stockade      peer")
print(f"workflows vs zizmor                 {r_s_wf:7.1f} MiB {r_z_wf:7.1f} MiB  ({r_z_wf / r_s_wf:.1f}x less)")
print(f"workflows vs checkov                {r_s_wf:7.1f} MiB {r_c_wf:7.1f} MiB  ({r_c_wf / r_s_wf:.1f}x less)")
print(f"10,000 files                        {r_s_big:7.1f} MiB   goal <= 100 MiB: {'met' if r_s_big <= 100 else 'MISSED'}")
EOF
