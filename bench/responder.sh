#!/usr/bin/env bash
# What the responder costs a service: one `mock-service` answering a
# monitor's ping once a second, measured over S seconds once it is UP:
# CPU as a share of one core, and RSS. Runs in the `heartbeat-bench` vhost,
# apart from the tests' default vhost.
#
#   services=1 seconds=S cpu_percent_of_core=.. rss_kib=.. peak_rss_kib=..
#
# usage: bench/responder.sh [SECONDS=60]   MOCK_BIN=... for another build.
set -u
cd "$(dirname "$0")/.."
secs=${1:-60}
mock=${MOCK_BIN:-target/release/mock-service}
cargo build --release -q -p monitor -p mock-service || exit 1
rabbitmqctl -q add_vhost heartbeat-bench >/dev/null 2>&1
rabbitmqctl -q set_permissions -p heartbeat-bench guest '.*' '.*' '.*' >/dev/null || exit 1
url=amqp://guest:guest@127.0.0.1:5672/heartbeat-bench
lines=$(mktemp) name="resp$$"
MONITOR__HISTORY__PATH= target/release/monitor --headless --url "$url" >"$lines" 2>/dev/null &
mpid=$!
"$mock" --url "$url" --name "$name" --instance i >/dev/null 2>&1 &
spid=$!
trap 'kill -INT $spid $mpid 2>/dev/null; rm -f "$lines"' EXIT
for _ in $(seq 1 60); do
  grep -q "\"service\":\"$name\".*\"to\":\"up\"" "$lines" && break
  sleep 1
done
sleep 5
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
c1=$(cpu $spid) t1=$(date +%s.%N)
sleep "$secs"
c2=$(cpu $spid) t2=$(date +%s.%N)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$spid/status")
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$spid/status")
awk -v c1="$c1" -v c2="$c2" -v t1="$t1" -v t2="$t2" -v tck="$(getconf CLK_TCK)" -v rss="$rss" -v hwm="$hwm" 'BEGIN {
  printf "services=1 seconds=%.0f cpu_percent_of_core=%.3f rss_kib=%s peak_rss_kib=%s\n", t2 - t1, (c2 - c1) / tck / (t2 - t1) * 100, rss, hwm
}'
