#!/usr/bin/env bash
# The monitor's whole-process cost per echo: a headless monitor (history off)
# and a fleet of N services (`mock-service --count N`) on the local broker;
# once all are UP, the monitor's CPU (user + system, from /proc) over the
# echoes of S seconds at one ping a second. One line out:
#   LABEL: services=N seconds=S echoes~E monitor_us_per_echo=.. fleet_us_per_ping=.. monitor_rss_kib=.. queue_depth_at_end=.. down=..
#
# usage: bench/cpu_per_echo.sh [SERVICES=500] [SECONDS=45] [LABEL=now] [MONITOR_BIN] [MOCK_BIN]
# Compare builds by passing another MONITOR_BIN (the fleet stays the same).
# A MONITOR_BIN older than the history store rejects MONITOR__HISTORY__PATH;
# set MONITOR_ENV= (empty) for it.
set -u
cd "$(dirname "$0")/.."
n=${1:-500} secs=${2:-45} label=${3:-now}
mon=${4:-target/release/monitor} mock=${5:-target/release/mock-service}
monitor_env=${MONITOR_ENV-MONITOR__HISTORY__PATH=}
[ $# -ge 4 ] || cargo build --release -q -p monitor -p mock-service
out=$(mktemp) name="cpe$$" id="cpe-$label-$$"
env $monitor_env "$mon" --headless --id "$id" >"$out" 2>/dev/null &
mpid=$!
"$mock" --name "$name" --instance i --count "$n" >/dev/null 2>&1 &
fpid=$!
trap 'kill $fpid $mpid 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 1 120); do
  [ "$(grep -c "\"service\":\"$name-" "$out")" -ge "$n" ] && break
  sleep 1
done
sleep 5
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
c1=$(cpu $mpid) f1=$(cpu $fpid) t1=$(date +%s.%N)
sleep "$secs"
c2=$(cpu $mpid) f2=$(cpu $fpid) t2=$(date +%s.%N)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$mpid/status")
depth=$(rabbitmqctl -q list_queues name messages 2>/dev/null | awk -v q="heartbeat.monitor.$id" '$1 == q {print $2}')
downs=$(grep -c '"to":"down"' "$out")
kill -INT $fpid; sleep 3; kill -INT $mpid; wait $mpid 2>/dev/null
awk -v label="$label" -v n="$n" -v c1="$c1" -v c2="$c2" -v f1="$f1" -v f2="$f2" \
    -v t1="$t1" -v t2="$t2" -v tck="$(getconf CLK_TCK)" -v rss="$rss" -v depth="${depth:-?}" -v downs="$downs" 'BEGIN {
  el = t2 - t1; echoes = n * el   # one ping a second, every member answers
  printf "%s: services=%d seconds=%.0f echoes~%.0f monitor_us_per_echo=%.1f fleet_us_per_ping=%.1f monitor_rss_kib=%s queue_depth_at_end=%s down=%s\n",
    label, n, el, echoes, (c2 - c1) / tck * 1e6 / echoes, (f2 - f1) / tck * 1e6 / echoes, rss, depth, downs
}'
