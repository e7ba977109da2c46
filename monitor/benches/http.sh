#!/usr/bin/env bash
# What the HTTP endpoint costs, with the release binaries against the
# RabbitMQ on 127.0.0.1:5672 and a fleet of N services in one process:
# the monitor's CPU without --listen, with it but idle, and while a client
# reads /metrics and /api/v1/status back to back for S seconds; the latency
# and size of each page; and the DOWN lines seen meanwhile (there should be
# none). Requests go to 127.0.0.1 only, and stop after S seconds.
# Run from the repository root:
#   cargo build --release && monitor/benches/http.sh 1000 20
set -euo pipefail
n=${1:-1000}
secs=${2:-20}
bin=target/release
tag=httpbench$$
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT INT TERM

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"

# CPU time (user + system) of a process, in clock ticks.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
cpu_ms_per_s() { awk -v a="$1" -v b="$2" -v s="$3" -v hz="$hz" 'BEGIN { printf "%.1f", (b - a) * 1000 / hz / s }'; }
# The fleet's instances UP in the status document (the shared broker may carry others).
ups() {
  { curl -s "$base/api/v1/status" || true; } |
    { grep -o "\"service\":\"$tag-[0-9]*\",\"instance\":\"[^\"]*\",\"state\":\"up\"" || true; } | wc -l
}

"$bin/mock-service" --name "$tag" --count "$n" 2>/dev/null &
pids+=($!)

# 1. Without --listen: the baseline.
"$bin/monitor" --headless --interval 1s --timeout 3s --id "$tag-a" >"$dir/a.out" 2>/dev/null &
plain=$!
pids+=($plain)
until [ "$(grep -c "\"service\":\"$tag-[0-9]*\".*first_seen" "$dir/a.out")" -ge "$n" ]; do sleep 0.5; done
sleep 3
t0=$(ticks $plain); sleep "$secs"; t1=$(ticks $plain)
echo "services $n (the fleet; the shared broker may carry others: $(grep -c first_seen "$dir/a.out") seen)"
echo "monitor without --listen: $(cpu_ms_per_s "$t0" "$t1" "$secs") ms CPU/s, $(grep VmRSS /proc/$plain/status | tr -s ' \t' ' ')"
kill -INT $plain; wait $plain 2>/dev/null || true

# 2. With --listen, nobody asking.
"$bin/monitor" --headless --interval 1s --timeout 3s --id "$tag-b" --listen "127.0.0.1:$port" >"$dir/b.out" 2>/dev/null &
served=$!
pids+=($served)
until [ "$(ups)" -ge "$n" ]; do sleep 0.5; done
sleep 3
t0=$(ticks $served); sleep "$secs"; t1=$(ticks $served)
echo "monitor with --listen, idle: $(cpu_ms_per_s "$t0" "$t1" "$secs") ms CPU/s, $(grep VmRSS /proc/$served/status | tr -s ' \t' ' ')"

# 3. A client reading both pages back to back for $secs seconds.
downs_before=$(grep -c '"to":"down"' "$dir/b.out" || true)
t0=$(ticks $served)
end=$(( $(date +%s) + secs ))
while [ "$(date +%s)" -lt "$end" ]; do
  curl -s -o /dev/null -w '%{time_total} %{size_download}\n' "$base/metrics" >>"$dir/metrics.t"
  curl -s -o /dev/null -w '%{time_total} %{size_download}\n' "$base/api/v1/status" >>"$dir/status.t"
done
t1=$(ticks $served)
echo "monitor with --listen, pages read back to back: $(cpu_ms_per_s "$t0" "$t1" "$secs") ms CPU/s, $(grep VmRSS /proc/$served/status | tr -s ' \t' ' ')"
for page in metrics status; do
  sort -n "$dir/$page.t" | awk -v page="$page" '
    { t[NR] = $1 * 1000; size = $2 }
    END { printf "  /%s: %d requests, p50 %.1f ms, p99 %.1f ms, max %.1f ms, %d bytes\n",
          (page == "status" ? "api/v1/status" : page), NR, t[int(NR * 0.5) + 1], t[int(NR * 0.99) + 1], t[NR], size }'
done
downs_after=$(grep -c '"to":"down"' "$dir/b.out" || true)
echo "DOWN lines while the pages were read: $(( downs_after - downs_before ))"
