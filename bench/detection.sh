#!/usr/bin/env bash
# The detection benchmark: how soon a crash is seen, and how often a live
# service is accused, for one detection mode, against the RabbitMQ on
# 127.0.0.1:5672 with the release binaries. Run from the repository root:
#
#   cargo build --release
#   bench/detection.sh --mode phi   --profile normal            # the full run
#   bench/detection.sh --mode fixed --profile harsh
#   bench/detection.sh --mode phi --services 50 --minutes 2 --kills 6   # a short check
#
# What it does, all at once for --minutes:
# - --services live mock services with jittered answers (profile normal:
#   200 ± 150 ms; harsh: 1500 ± 1000 ms), pinged every second (--interval);
# - --kills more services, one process each, SIGKILLed one at a time, evenly spread over the
#   run: the time from the kill to SUSPECT and to DOWN;
# - a CPU hog on every core (`yes`, at the same priority as the rest), so the monitor
#   and the services compete for CPU;
# - halfway, the monitor's connection is closed from the broker's side
#   (rabbitmqctl close_connection): its services must go STALE, never DOWN.
# It prints detection times (median, p99, max) and false SUSPECT and false
# DOWN per service-hour among the live services. Needs root's rabbitmqctl
# for the connection close, python3 for the figures.
set -euo pipefail

mode=phi profile=normal services=200 minutes=10 kills=20 interval=1s timeout=3s
while [[ $# -gt 0 ]]; do
  case "$1" in
    --mode) mode=$2 ;;
    --profile) profile=$2 ;;
    --services) services=$2 ;;
    --minutes) minutes=$2 ;;
    --kills) kills=$2 ;;
    --interval) interval=$2 ;;
    --timeout) timeout=$2 ;;
    *) echo "detection.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift 2
done
case "$profile" in
  normal) latency=50ms jitter=300ms ;;    # uniform 50..350 ms: 200 ± 150
  harsh) latency=500ms jitter=2000ms ;;   # uniform 500..2500 ms: 1500 ± 1000
  *) echo "detection.sh: --profile normal or harsh" >&2; exit 2 ;;
esac

bin=target/release
[[ -x $bin/monitor && -x $bin/mock-service ]] || { echo "run cargo build --release first" >&2; exit 2; }
tag=det$$
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The CPU hog: one busy loop per core.
for _ in $(seq "$(nproc)"); do
  yes >/dev/null &
  pids+=($!)
done

"$bin/monitor" --headless --mode "$mode" --interval "$interval" --timeout "$timeout" \
  --id "$tag" >"$work/lines.jsonl" 2>"$work/monitor.log" &
monitor=$!
pids+=($monitor)

mock() { # name instance [latency jitter]
  "$bin/mock-service" --name "$1" --instance "$2" ${3:+--latency "$3" --jitter "$4"} \
    2>>"$work/mocks.log" &
  pids+=($!)
}
# The live fleet in one process (mock-service --count): $tag-live-0 and on.
"$bin/mock-service" --name "$tag-live" --instance l --count "$services" \
  --latency "$latency" --jitter "$jitter" 2>>"$work/mocks.log" &
pids+=($!)
declare -a victims
for i in $(seq "$kills"); do
  mock "$tag-victim" "v$i" "$latency" "$jitter"
  victims[$i]=$!
done

# Everyone must be up before the clock starts.
expected=$((services + kills))
deadline=$((SECONDS + 120))
until [[ $(grep -c '"first_seen"' "$work/lines.jsonl" || true) -ge $expected ]]; do
  ((SECONDS < deadline)) || { echo "only $(grep -c first_seen "$work/lines.jsonl") of $expected services came up" >&2; exit 1; }
  sleep 0.5
done
start=$(date +%s.%N)
echo "mode $mode, profile $profile ($latency + up to $jitter), $services live services, $kills kills, $minutes min, interval $interval, timeout $timeout"

total=$((minutes * 60))
gap=$((total / (kills + 1)))
closed=0
: >"$work/kills.txt"
for i in $(seq "$kills"); do
  if ((closed == 0 && i * gap >= total / 2)); then
    # Between two kills, so no kill falls in the blind spell.
    sleep $((gap / 2))
    # Halfway: the broker closes the monitor's connection.
    pid=$(rabbitmqctl -q list_connections pid client_properties 2>/dev/null |
      grep "monitor $tag" | awk '{print $1}' | head -1)
    if [[ -n $pid ]]; then
      rabbitmqctl -q close_connection "$pid" "detection benchmark" >/dev/null
      echo "closed the monitor's connection at +$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.0f", b-a}') s"
    else
      echo "could not find the monitor's connection to close" >&2
    fi
    closed=1
    sleep $((gap - gap / 2))
  else
    sleep "$gap"
  fi
  echo "v$i $(date +%s.%N)" >>"$work/kills.txt"
  kill -9 "${victims[$i]}"
  wait "${victims[$i]}" 2>/dev/null || true  # reaped quietly, no "Killed" line
done
sleep $((total - kills * gap + 10))
end=$(date +%s.%N)
echo "monitor resident memory: $(grep VmRSS /proc/$monitor/status | awk '{print $2, $3}')"

python3 - "$work/lines.jsonl" "$work/kills.txt" "$tag" "$services" "$start" "$end" <<'PY'
import json, sys, statistics
from datetime import datetime
lines_path, kills_path, tag, services, start, end = sys.argv[1:]
services, start, end = int(services), float(start), float(end)
def at(line):
    return datetime.fromisoformat(line["at"].replace("Z", "+00:00")).timestamp()
lines = [json.loads(l) for l in open(lines_path) if l.strip()]
kills = {k: float(t) for k, t in (l.split() for l in open(kills_path))}
to_suspect, to_down = [], []
for instance, killed in kills.items():
    mine = [l for l in lines if l.get("service") == f"{tag}-victim" and l.get("instance") == instance and at(l) >= killed]
    s = next((at(l) - killed for l in mine if l["to"] == "suspect"), None)
    d = next((at(l) - killed for l in mine if l["to"] == "down"), None)
    if s is not None: to_suspect.append(s)
    if d is not None: to_down.append(d)
def summary(name, xs):
    if not xs:
        print(f"{name}: none seen"); return
    xs = sorted(xs)
    p99 = xs[min(len(xs) - 1, round(0.99 * (len(xs) - 1)))]
    print(f"{name}: median {statistics.median(xs):.2f} s, p99 {p99:.2f} s, max {xs[-1]:.2f} s over {len(xs)} kills")
summary("kill -> SUSPECT", to_suspect)
summary("kill -> DOWN", to_down)
live = [l for l in lines if l.get("service", "").startswith(f"{tag}-live-") and start <= at(l) <= end]
hours = services * (end - start) / 3600
count = lambda to: sum(1 for l in live if l.get("to") == to)
print(f"live services: {hours:.1f} service-hours")
for state in ["suspect", "down", "flapping", "stale"]:
    n = count(state)
    print(f"  to {state}: {n} ({n / hours:.2f} per service-hour)")
links = [l for l in lines if l.get("kind") == "link"]
stalls = [l for l in lines if l.get("kind") == "stall"]
print(f"link lines: {len(links)} ({', '.join(l['status'] for l in links)}); stall lines: {len(stalls)}")
PY
