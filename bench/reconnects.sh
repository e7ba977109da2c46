#!/usr/bin/env bash
# The monitor's memory across reconnects: a headless monitor and a fleet on
# the local broker (vhost `heartbeat-bench`); 30 s after start, the
# monitor's connection is closed from the broker's side (rabbitmqctl
# close_connection) CLOSES times, GAP seconds apart. One line out: the
# monitor's RSS in KiB at the start, then after each close.
#
# usage: bench/reconnects.sh [CLOSES=30] [GAP_SECS=5] [SERVICES=500]
#        MONITOR_BIN=... another build.
set -u
cd "$(dirname "$0")/.."
closes=${1:-30} gap=${2:-5} n=${3:-500}
. bench/common.sh
id="reconnects-$$"
target/release/mock-service --url "$url" --name "reconnects$$" --instance i --count "$n" >/dev/null 2>&1 &
fleet=$!
MONITOR__HISTORY__PATH= "$mon" --headless --url "$url" --id "$id" >/dev/null 2>&1 &
monitor=$!
trap 'kill -INT $monitor $fleet 2>/dev/null; wait' EXIT
sleep 30
rss() { awk '/VmRSS/ {print $2}' "/proc/$monitor/status"; }
line="start=$(rss)"
for _ in $(seq 1 "$closes"); do
  # The monitor names its connection after its id.
  for pid in $(rabbitmqctl -q list_connections -p "$vhost" pid client_properties 2>/dev/null |
    grep "$id" | awk '{print $1}'); do
    rabbitmqctl -q close_connection "$pid" "bench/reconnects.sh" >/dev/null 2>&1
  done
  sleep "$gap"
  line="$line $(rss)"
done
echo "$line"
