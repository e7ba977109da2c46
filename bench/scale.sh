#!/usr/bin/env bash
# The monitor's whole-process cost per echo beside two floors, fed by the
# same fleet in the same run: a bare lapin no-ack consumer
# (bench/src/bin/bare-consumer.rs) and a bare amqprs one on a current-thread
# runtime (bench/src/bin/bare-amqprs.rs). Issues 7 and 25.
#
# For each kind of fleet in FLEETS, one after the other, a monitor (headless,
# or the dashboard under tmux), the two bare consumers and a fleet of N
# services run on the local broker, in a vhost of their own
# (`heartbeat-bench`), so that neither the benchmark's fleet nor the tests on
# the default vhost see each other. Once all N are UP, CPU (user + system,
# from /proc) is read over S seconds. One line out per fleet:
#
#   services mode fleet seconds echoes monitor_us_per_echo lapin_us_per_echo
#   amqprs_us_per_echo ratio ratio_best monitor_peak_rss_kib monitor_queue_max
#   bare_queue_max down fleet_us_per_ping key_ms
#
# The fleets (FLEETS, default "burst spread python"):
#   burst   `mock-service --count N` (in processes of 2,000, the most --count
#           takes): every service answers at once, one burst a ping
#   spread  the same with `--latency 20ms --jitter 40ms`: answers spread over
#           20-60 ms, as a real fleet's are (a burst hides per-message costs)
#   python  bench/pika_fleet.py: N services on one pika connection, another
#           process and language
#
# ratio: the monitor over bare lapin; ratio_best: over the cheaper of the
# two floors. monitor_queue_max: the largest depth of the monitor's queue
# seen (sampled every 2 s with rabbitmqctl); down: DOWN transitions in the
# window (headless only); fleet_us_per_ping: the fleet's CPU per ping it
# answered (it answers the monitor and both floors); key_ms (dashboard only):
# from a key sent by tmux to its effect on screen, the median of 5.
#
# usage: bench/scale.sh [SERVICES=2000] [SECONDS=60] [MODE=headless|dashboard]
#        FLEETS="burst spread" to measure only some fleets.
#        MONITOR_BIN=... to measure another build of the monitor.
#        BARE=no to leave the floors out: they triple the pings the fleet
#        answers, which a 2-core box cannot carry at 10,000 services.
#        MONITOR_ENV="..." for the monitor's environment (default: history
#        off, MONITOR__HISTORY__PATH=; set it empty for a build without
#        history, which rejects that setting).
set -u
cd "$(dirname "$0")/.."
n=${1:-2000} secs=${2:-60} mode=${3:-headless}
fleets=${FLEETS:-burst spread python}
mon=${MONITOR_BIN:-target/release/monitor}
monitor_env=${MONITOR_ENV-MONITOR__HISTORY__PATH=}
bare_wanted=${BARE:-yes}
mock=target/release/mock-service lapin=target/release/bare-consumer amqprs=target/release/bare-amqprs
cargo build --release -q -p monitor -p mock-service -p heartbeat-bench || exit 1
case " $fleets " in
  *" python "*) python3 -c 'import pika' 2>/dev/null || { echo "scale.sh: the python fleet needs pika (pip install pika)" >&2; exit 1; } ;;
esac
ctl() { rabbitmqctl -q "$@"; }
vhost=heartbeat-bench
ctl add_vhost "$vhost" >/dev/null 2>&1
ctl set_permissions -p "$vhost" guest '.*' '.*' '.*' >/dev/null || exit 1
url="amqp://guest:guest@127.0.0.1:5672/$vhost"

# The pids of one fleet's measurement; the cleanup stops whatever runs.
mpid= lpid= apid= fpid= spid= session= work=
stop_all() {
  for p in $fpid; do kill -INT "$p" 2>/dev/null; done
  [ -n "$spid" ] && kill "$spid" 2>/dev/null
  [ -n "$lpid" ] && kill "$lpid" 2>/dev/null
  [ -n "$apid" ] && kill "$apid" 2>/dev/null
  for p in $fpid; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  done
  [ -n "$session" ] && tmux kill-session -t "$session" 2>/dev/null
  [ -n "$mpid" ] && kill -INT "$mpid" 2>/dev/null
  [ -n "$work" ] && rm -rf "$work"
  mpid= lpid= apid= fpid= spid= session= work=
}
trap stop_all EXIT

cpu() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# The CPU of several processes (a fleet of several mock-services), summed.
cpu_sum() { local t=0 p; for p in "$@"; do t=$((t + $(cpu "$p"))); done; echo "$t"; }
# mock-service --count takes at most this many; a larger fleet is several.
MOCK_MAX=2000
# Start a mock-service fleet of $n in processes of at most MOCK_MAX each;
# their pids in fpid.
mock_fleet() {
  local name=$1 left=$n k=0 c; shift
  fpid=
  while [ "$left" -gt 0 ]; do
    c=$(( left > MOCK_MAX ? MOCK_MAX : left ))
    "$mock" --url "$url" --name "$name$k" --instance i --count "$c" "$@" >/dev/null 2>&1 &
    fpid="$fpid $!"
    left=$((left - c)) k=$((k + 1))
  done
}
count_of() { tail -1 "$1" 2>/dev/null | awk '{print $2 + 0}'; }

measure() {
  local fleet=$1
  work=$(mktemp -d)
  local id="scale-$$-$fleet" name="scale$$$fleet"
  if [ "$mode" = dashboard ]; then
    session="scale$$$fleet"
    tmux new-session -d -s "$session" -x 160 -y 45 \
      "exec env $monitor_env $mon --url '$url' --id $id --log-file $work/monitor.log"
    # exec: the pane's process is the monitor itself.
    mpid=$(tmux display-message -p -t "$session" '#{pane_pid}')
  else
    env $monitor_env "$mon" --headless --url "$url" --id "$id" >"$work/lines" 2>"$work/monitor.log" &
    mpid=$!
  fi
  if [ "$bare_wanted" = no ]; then
    echo "0 0" >"$work/lapin"; echo "0 0" >"$work/amqprs"
  else
    "$lapin" "$url" >"$work/lapin" 2>&1 &
    lpid=$!
    "$amqprs" "$url" >"$work/amqprs" 2>&1 &
    apid=$!
  fi
  case "$fleet" in
    burst) mock_fleet "$name" ;;
    spread) mock_fleet "$name" --latency 20ms --jitter 40ms ;;
    python) python3 bench/pika_fleet.py "$url" "$name" "$n" >/dev/null 2>"$work/fleet.log" & fpid=$! ;;
    *) echo "scale.sh: unknown fleet $fleet (burst, spread, python)" >&2; return 1 ;;
  esac

  up() {
    if [ "$mode" = dashboard ]; then
      # The header counts the services that are up.
      tmux capture-pane -p -t "$session" | grep -oE '[0-9]+ up' | head -1 | grep -oE '[0-9]+'
    else
      grep -c "\"to\":\"up\"" "$work/lines"
    fi
  }
  for _ in $(seq 1 300); do
    [ "$(up)" -ge "$n" ] 2>/dev/null && break
    sleep 1
  done
  if ! [ "$(up)" -ge "$n" ] 2>/dev/null; then
    echo "scale.sh: fleet $fleet: only $(up) of $n services came up in 300 s" >&2
    stop_all
    return 1
  fi
  sleep 5

  (while sleep 2; do ctl list_queues -p "$vhost" name messages_ready 2>/dev/null; done >"$work/depths") &
  spid=$!
  local downs_before downs_after m1 m2 l1 l2 a1 a2 f1 f2 le1 le2 ae1 ae2 t1 t2
  downs_before=$(grep -c '"to":"down"' "$work/lines" 2>/dev/null)
  m1=$(cpu $mpid) l1=$(cpu "${lpid:-$$}") a1=$(cpu "${apid:-$$}") f1=$(cpu_sum $fpid)
  le1=$(count_of "$work/lapin") ae1=$(count_of "$work/amqprs") t1=$(date +%s.%N)
  sleep "$secs"
  m2=$(cpu $mpid) l2=$(cpu "${lpid:-$$}") a2=$(cpu "${apid:-$$}") f2=$(cpu_sum $fpid)
  le2=$(count_of "$work/lapin") ae2=$(count_of "$work/amqprs") t2=$(date +%s.%N)
  kill $spid 2>/dev/null; spid=
  downs_after=$(grep -c '"to":"down"' "$work/lines" 2>/dev/null)

  local key_ms=-
  if [ "$mode" = dashboard ]; then
    # `?` opens the help and Esc closes it; time each until the screen shows it.
    local samples=() s e
    for _ in 1 2 3 4 5; do
      s=$(date +%s%N); tmux send-keys -t "$session" '?'
      until tmux capture-pane -p -t "$session" | grep -q '┌ keys'; do :; done
      e=$(date +%s%N); samples+=($(( (e - s) / 1000000 )))
      tmux send-keys -t "$session" Escape
      until ! tmux capture-pane -p -t "$session" | grep -q '┌ keys'; do :; done
    done
    key_ms=$(printf '%s\n' "${samples[@]}" | sort -n | sed -n 3p)
  fi
  local rss mq bq
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$mpid/status")
  mq=$(awk -v q="heartbeat.monitor.$id" '$1 == q && $2 > m {m = $2} END {print m + 0}' "$work/depths")
  bq=$(awk '$1 ~ /^heartbeat.monitor.bare-/ && $2 > m {m = $2} END {print m + 0}' "$work/depths")
  awk -v n="$n" -v mode="$mode" -v fleet="$fleet" -v m1="$m1" -v m2="$m2" -v l1="$l1" -v l2="$l2" \
      -v a1="$a1" -v a2="$a2" -v f1="$f1" -v f2="$f2" -v le1="$le1" -v le2="$le2" -v ae1="$ae1" -v ae2="$ae2" \
      -v t1="$t1" -v t2="$t2" -v tck="$(getconf CLK_TCK)" -v rss="$rss" -v mq="$mq" -v bq="$bq" \
      -v bare="$bare_wanted" -v down="$((downs_after - downs_before))" -v key="$key_ms" 'BEGIN {
    el = t2 - t1
    lapin_echoes = le2 - le1; amqprs_echoes = ae2 - ae1
    # The floors count; the monitor hears the same fleet as often.
    echoes = lapin_echoes; pingers = 3
    if (bare == "no") { echoes = n * el; pingers = 1 }   # one echo a second each
    else if (echoes == 0 || amqprs_echoes == 0) { print "scale.sh: a floor counted no echoes (HEARTBEAT_KEY set?)" > "/dev/stderr"; exit 1 }
    m = (m2 - m1) / tck * 1e6 / echoes
    l = (bare == "no") ? 0 : (l2 - l1) / tck * 1e6 / lapin_echoes
    a = (bare == "no") ? 0 : (a2 - a1) / tck * 1e6 / amqprs_echoes
    best = (a > 0 && a < l) ? a : l
    # The fleet answers the monitor and each floor.
    f = (f2 - f1) / tck * 1e6 / (pingers * echoes)
    printf "services=%d mode=%s fleet=%s seconds=%.0f echoes=%d monitor_us_per_echo=%.1f lapin_us_per_echo=%.1f amqprs_us_per_echo=%.1f ratio=%.2f ratio_best=%.2f monitor_peak_rss_kib=%s monitor_queue_max=%s bare_queue_max=%s down=%s fleet_us_per_ping=%.1f key_ms=%s\n",
      n, mode, fleet, el, echoes, m, l, a, (l > 0 ? m / l : 0), (best > 0 ? m / best : 0), rss, mq, bq, (mode == "dashboard" ? "-" : down), f, key
  }'
  stop_all
}

status=0
for fleet in $fleets; do
  measure "$fleet" || status=1
done
exit $status
