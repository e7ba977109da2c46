#!/usr/bin/env bash
# Detection figures with the release binaries against the RabbitMQ on
# 127.0.0.1:5672: memory after a few seconds, time from SIGKILL and from
# SIGINT to the DOWN line. Run from the repository root:
#   cargo build --release && monitor/benches/detection.sh
set -euo pipefail
bin=target/release
out=$(mktemp)
tag=bench$$
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f s", b - a }'; }
wait_for() { until grep -q "$1" "$out"; do sleep 0.005; done; }

"$bin/monitor" --headless --interval 1s --timeout 3s --id "$tag" >"$out" 2>/dev/null &
monitor=$!
"$bin/mock-service" --name "$tag-a" --instance a 2>/dev/null &
killed=$!
"$bin/mock-service" --name "$tag-b" --instance b 2>/dev/null &
stopped=$!
trap 'kill $monitor $killed $stopped 2>/dev/null || true; rm -f "$out"' EXIT
wait_for "$tag-a.*first_seen"
wait_for "$tag-b.*first_seen"
sleep 5
echo "monitor $(grep VmRSS /proc/$monitor/status | tr -s ' \t' ' ')"
echo "mock    $(grep VmRSS /proc/$killed/status | tr -s ' \t' ' ')"
grep first_seen "$out" | sed 's/.*"rtt_ms":/first echo rtt_ms: /; s/}//'

t0=$(now); kill -9 $killed
wait_for "$tag-a.*timed_out"
echo "SIGKILL -> DOWN line: $(elapsed "$t0" "$(now)") ($(grep -o '"silent_ms":[0-9]*' "$out"))"
t0=$(now); kill -INT $stopped
wait_for "$tag-b.*left"
echo "SIGINT  -> DOWN line: $(elapsed "$t0" "$(now)")"
