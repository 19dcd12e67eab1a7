#!/usr/bin/env bash
# Egress benchmark, in one run, against the same local server on 127.0.0.1:
#   1. throughput of a 1 GiB download with the same client (curl) and server, in rotating order:
#      direct on the host's loopback; "direct in a job netns" (client and a second server inside
#      a namespace egress set up, its nftables and conntrack included, no proxy: the fairest
#      peer); through the proxy (explicit and transparent); goal >= 0.8x. Medians of RUNS runs,
#      and the CPU seconds per GiB of client, server and supervisor (where the bytes cost);
#   2. added latency per new connection, median over many requests (goal <= 0.5 ms);
#   3. DNS answer latency of the job's resolver (goal <= 0.2 ms);
#   4. start-up cost of egress: setup_netns + Egress::start, and `stockade run -- true` with
#      egress on vs off where `stockade run` supports --egress (goal <= +1.5 ms);
#   5. supervisor RSS with 200 open proxied connections (goal <= 30 MiB).
# Jobs run in a fresh user+network namespace via stockade-egress-try (the same calls the
# sandbox makes). All traffic stays on loopback. Usage: bash bench/egress.sh  (RUNS=N to change)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
RUNS="${RUNS:-5}"
LAT_N="${LAT_N:-200}"
PORT="${PORT:-18931}"
GIB=$((1 << 30))

cargo build --release -q -p stockade-egress
have_stockade=1
cargo build --release -q -p stockade 2>/dev/null || have_stockade=0
out_dir="$CARGO_TARGET_DIR/$(rustc -vV | sed -n 's/^host: //p')/release"  # .cargo/config.toml names the target
TRY="$out_dir/stockade-egress-try"
STOCKADE="$out_dir/stockade"

work="$(mktemp -d)"
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) {print "nan"} else if (NR%2) {print a[(NR+1)/2]} else {print (a[NR/2]+a[NR/2+1])/2}}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }

start_server() {
  "$TRY" probe serve-http "127.0.0.1:$PORT" "$@" >"$work/server.out" &
  server_pid=$!
  for _ in $(seq 200); do grep -q listening "$work/server.out" 2>/dev/null && return; sleep 0.01; done
  echo "bench: server did not start" >&2; exit 1
}
stop_server() { kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; server_pid=""; }

POLICY="{\"mode\":\"allowlist\",\"allow\":[\"bench.test:$PORT\"],\"resolve\":{\"bench.test\":\"127.0.0.1\"}}"
in_job() { "$TRY" --timing --policy-json "$POLICY" -- sh -c "$1" 2>>"$work/timing.txt"; }

echo "== egress benchmark ($(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), $RUNS runs)"
start_server

# 1. Throughput. Each line of $work/tp.txt: MODE MB/s CLIENT_CPU SERVER_CPU SUPERVISOR_CPU (s).
CLK="$(getconf CLK_TCK)"
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
secs() { awk -v t="$1" -v c="$CLK" 'BEGIN {printf "%.3f", t / c}'; }
field() { awk -v k="$1" '$1 == k {print $2 + $3; exit}'; } # "KEY A [B]" -> A+B
PORT_IN=$((PORT + 1))
tp_direct() {
  local s0 out
  s0=$(ticks "$server_pid")
  out=$({ /usr/bin/time -f 'cpu %U %S' curl -s --noproxy '*' -o /dev/null -w 'speed %{speed_download}\n' \
    "http://127.0.0.1:$PORT/bytes/$GIB"; } 2>&1)
  echo "direct $(field speed <<<"$out") $(field cpu <<<"$out") $(secs $(($(ticks "$server_pid") - s0))) 0"
}
tp_proxied() { # MODE CURL_FLAGS
  local s0 out
  s0=$(ticks "$server_pid")
  out=$("$TRY" --timing --policy-json "$POLICY" -- sh -c \
    "/usr/bin/time -f 'cpu %U %S' curl -s $2 -o /dev/null -w 'speed %{speed_download}\n' http://bench.test:$PORT/bytes/$GIB" 2>&1)
  local sup
  sup=$(awk '/supervisor cpu_ticks/ {print $4}' <<<"$out")
  echo "$1 $(field speed <<<"$out") $(field cpu <<<"$out") $(secs $(($(ticks "$server_pid") - s0))) $(secs "${sup:-0}")"
}
tp_in_netns() {
  local out
  out=$("$TRY" --policy-json "$POLICY" -- sh -c \
    "\"$TRY\" probe serve-http 127.0.0.1:$PORT_IN >/dev/null & s=\$!
     for i in \$(seq 200); do curl -s -o /dev/null http://127.0.0.1:$PORT_IN/ && break; sleep 0.01; done
     t0=\$(awk '{print \$14 + \$15}' /proc/\$s/stat)
     /usr/bin/time -f 'cpu %U %S' curl -s --noproxy '*' -o /dev/null -w 'speed %{speed_download}\n' http://127.0.0.1:$PORT_IN/bytes/$GIB
     echo server \$((\$(awk '{print \$14 + \$15}' /proc/\$s/stat) - t0)); kill \$s" 2>&1)
  echo "in-netns $(field speed <<<"$out") $(field cpu <<<"$out") $(secs "$(field server <<<"$out")") 0"
}
: >"$work/tp.txt"
for i in $(seq "$RUNS"); do
  # Rotate the order, so that load drift and cache state fall on every mode alike.
  order=(direct in-netns proxy transparent)
  for k in 0 1 2 3; do
    case "${order[$(((k + i) % 4))]}" in
      direct) tp_direct ;;
      in-netns) tp_in_netns ;;
      proxy) tp_proxied proxy "" ;;
      transparent) tp_proxied transparent "--noproxy '*'" ;;
    esac
  done >>"$work/tp.txt"
done
col() { awk -v m="$1" -v c="$2" '$1 == m {print $c}' "$work/tp.txt" | median; }
d=$(col direct 2); n=$(col in-netns 2); p=$(col proxy 2); t=$(col transparent 2)
printf '1 GiB download   direct %6.0f MB/s | in a job netns, no proxy %6.0f MB/s | proxy %6.0f MB/s (%sx direct, %sx in-netns) | transparent %6.0f MB/s (%sx, %sx)   goal >= 0.8x\n' \
  "$(awk -v x="$d" 'BEGIN{print x/1e6}')" "$(awk -v x="$n" 'BEGIN{print x/1e6}')" \
  "$(awk -v x="$p" 'BEGIN{print x/1e6}')" "$(ratio "$p" "$d")" "$(ratio "$p" "$n")" \
  "$(awk -v x="$t" 'BEGIN{print x/1e6}')" "$(ratio "$t" "$d")" "$(ratio "$t" "$n")"
for m in direct in-netns proxy transparent; do
  printf '  CPU s/GiB %-12s client %.2f  server %.2f  supervisor %.2f  total %.2f\n' "$m" "$(col $m 3)" "$(col $m 4)" \
    "$(col $m 5)" "$(awk -v a="$(col $m 3)" -v b="$(col $m 4)" -v c="$(col $m 5)" 'BEGIN {print a + b + c}')"
done

# 2. Latency of a new connection: one small request per connection, LAT_N of them.
urls() { for _ in $(seq "$LAT_N"); do printf '%s ' "$1"; done; }
lat_direct=$(curl -s --noproxy '*' -H 'Connection: close' -o /dev/null -w '%{time_total}\n' $(urls "http://127.0.0.1:$PORT/") | median)
lat_proxy=$(in_job "curl -s -H 'Connection: close' -o /dev/null -w '%{time_total}\n' $(urls "http://bench.test:$PORT/")" | median)
lat_transp=$(in_job "curl -s --noproxy '*' -H 'Connection: close' -o /dev/null -w '%{time_total}\n' $(urls "http://bench.test:$PORT/")" | median)
awk -v d="$lat_direct" -v p="$lat_proxy" -v t="$lat_transp" 'BEGIN {
  printf "new connection   direct %.3f ms | proxy %.3f ms (+%.3f ms) | transparent %.3f ms (+%.3f ms, includes the job'"'"'s DNS lookup)   goal <= +0.5 ms\n",
    d*1000, p*1000, (p-d)*1000, t*1000, (t-d)*1000 }'

# 3. DNS answer latency (a pinned, allowed name: answered without an upstream).
dns=$(in_job "\"$TRY\" probe dns-bench 127.0.0.1:53 bench.test 2000" | awk '{print $3}')
dns_denied=$(in_job "\"$TRY\" probe dns-bench 127.0.0.1:53 denied.test 2000" | awk '{print $3}')
printf 'DNS answer       allowed %s ms | refused %s ms   goal <= 0.2 ms\n' \
  "$(awk -v x="$dns" 'BEGIN{printf "%.3f", x/1000}')" "$(awk -v x="$dns_denied" 'BEGIN{printf "%.3f", x/1000}')"

# 4. Start-up cost.
: >"$work/timing.txt"
for _ in $(seq 20); do in_job true; done
setup=$(awk '/setup_netns/ {print $3}' "$work/timing.txt" | median)
start=$(awk '/Egress::start/ {print $3}' "$work/timing.txt" | median)
printf 'egress start-up  setup_netns %.3f ms (in the job namespace) + Egress::start %.3f ms (supervisor, overlaps the job)\n' \
  "$(awk -v x="$setup" 'BEGIN{print x/1000}')" "$(awk -v x="$start" 'BEGIN{print x/1000}')"
# (grep -c reads all of the help: with grep -q, stockade could die of SIGPIPE and pipefail
# would take that for "no --egress".)
if [ "$have_stockade" = 1 ] && "$STOCKADE" run --help 2>/dev/null | grep -c -- '--egress' >/dev/null; then
  # Interleaved, and in alternating order, so that load drift and order effects fall equally
  # on both.
  : >"$work/run-off.txt"; : >"$work/run-on.txt"; : >"$work/run-diff.txt"
  one() { # MODE -> wall time in us
    local s e
    s=$(date +%s%N)
    if [ "$1" = on ]; then
      "$STOCKADE" run --egress allowlist --allow-domain bench.test -- true >/dev/null 2>&1 || true
    else
      "$STOCKADE" run -- true >/dev/null 2>&1 || true
    fi
    e=$(date +%s%N)
    echo $(( (e - s) / 1000 ))
  }
  for i in $(seq 40); do
    if [ $((i % 2)) = 0 ]; then off_t=$(one off); on_t=$(one on); else on_t=$(one on); off_t=$(one off); fi
    echo "$off_t" >>"$work/run-off.txt"
    echo "$on_t" >>"$work/run-on.txt"
    echo $((on_t - off_t)) >>"$work/run-diff.txt"
  done
  off=$(median <"$work/run-off.txt"); on=$(median <"$work/run-on.txt"); diff=$(median <"$work/run-diff.txt")
  awk -v a="$off" -v b="$on" -v d="$diff" 'BEGIN { printf "stockade run     egress off %.2f ms | on %.2f ms (%.2fx; median paired difference %+.2f ms)   goal <= +1.5 ms\n", a/1000, b/1000, b/a, d/1000 }'
else
  echo "stockade run     (no --egress in this build of stockade run: sandbox start with egress not measured)"
fi
stop_server

# 5. Supervisor RSS with 200 connections open at once through the proxy.
rm -f "$work/ready" "$work/release"
start_server --hold 200 --ready "$work/ready" --release "$work/release"
"$TRY" --timing --policy-json "$POLICY" -- sh -c \
  "curl -s -Z --parallel-immediate --parallel-max 200 \$(for i in \$(seq 200); do echo http://bench.test:$PORT/hold; done) >/dev/null" \
  2>"$work/rss-timing.txt" &
job=$!
for _ in $(seq 3000); do [ -e "$work/ready" ] && break; sleep 0.01; done
rss_open=$(awk '/VmRSS/ {print $2}' "/proc/$job/status")
touch "$work/release"
wait "$job"
hwm=$(awk '/VmHWM/ {print $4}' "$work/rss-timing.txt")
printf 'supervisor RSS   %.1f MiB with 200 connections open, peak %.1f MiB   goal <= 30 MiB\n' \
  "$(awk -v x="$rss_open" 'BEGIN{print x/1024}')" "$(awk -v x="$hwm" 'BEGIN{print x/1024}')"
stop_server
