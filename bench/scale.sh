#!/usr/bin/env bash
# Issue 7's benchmark: the monitor's whole-process cost per echo beside the
# floor, a bare lapin no-ack consumer (bench/src/bin/bare-consumer.rs) fed
# by the same fleet in the same run.
#
# A monitor (headless, or the dashboard under tmux), the bare consumer and a
# fleet of N services (`mock-service --count N`) run on the local broker, in
# a vhost of their own (`heartbeat-bench`), so that neither the benchmark's
# fleet nor the tests on the default vhost see each other. Once all N are
# UP, CPU (user + system, from /proc) is read over S seconds. One line out:
#
#   services mode seconds echoes monitor_us_per_echo bare_us_per_echo ratio
#   monitor_peak_rss_kib monitor_queue_max bare_queue_max down fleet_us_per_ping key_ms
#
# monitor_queue_max: the largest depth of the monitor's queue seen (sampled
# every 2 s with rabbitmqctl); down: DOWN transitions in the window (headless
# only); key_ms (dashboard only): from a key sent by tmux to its effect on
# screen, the median of 5.
#
# usage: bench/scale.sh [SERVICES=2000] [SECONDS=60] [MODE=headless|dashboard]
#        MONITOR_BIN=... to measure another build of the monitor.
#        BARE=no to leave the floor out: it doubles the pings the fleet
#        answers, which a 2-core box cannot carry at 10,000 services.
#        MONITOR_ENV="..." for the monitor's environment (default: history
#        off, MONITOR__HISTORY__PATH=; set it empty for a build without
#        history, which rejects that setting).
set -u
cd "$(dirname "$0")/.."
n=${1:-2000} secs=${2:-60} mode=${3:-headless}
mon=${MONITOR_BIN:-target/release/monitor}
monitor_env=${MONITOR_ENV-MONITOR__HISTORY__PATH=}
bare_wanted=${BARE:-yes}
mock=target/release/mock-service bare=target/release/bare-consumer
cargo build --release -q -p monitor -p mock-service -p heartbeat-bench || exit 1
ctl() { rabbitmqctl -q "$@"; }
vhost=heartbeat-bench
ctl add_vhost "$vhost" >/dev/null 2>&1
ctl set_permissions -p "$vhost" guest '.*' '.*' '.*' >/dev/null || exit 1
url="amqp://guest:guest@127.0.0.1:5672/$vhost"
work=$(mktemp -d) id="scale-$$" name="scale$$"
session="scale$$"
cleanup() {
  kill -INT $fpid 2>/dev/null; sleep 2
  [ "$bpid" != $$ ] && kill $bpid 2>/dev/null
  [ -n "${spid:-}" ] && kill $spid 2>/dev/null
  [ "$mode" = dashboard ] && tmux kill-session -t "$session" 2>/dev/null
  kill -INT $mpid 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# The monitor keeps no history here: the store is measured by its own figures.
if [ "$mode" = dashboard ]; then
  tmux new-session -d -s "$session" -x 160 -y 45 \
    "exec env $monitor_env $mon --url '$url' --id $id --log-file $work/monitor.log"
  # exec: the pane's process is the monitor itself.
  mpid=$(tmux display-message -p -t "$session" '#{pane_pid}')
else
  env $monitor_env "$mon" --headless --url "$url" --id "$id" >"$work/lines" 2>"$work/monitor.log" &
  mpid=$!
fi
if [ "$bare_wanted" = no ]; then
  bpid=$$  # this shell stands in, so the reads below still work
  echo "0 0" >"$work/bare"
else
  "$bare" "$url" >"$work/bare" 2>&1 &
  bpid=$!
fi
"$mock" --url "$url" --name "$name" --instance i --count "$n" >/dev/null 2>&1 &
fpid=$!

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
  echo "scale.sh: only $(up) of $n services came up in 300 s" >&2
  exit 1
fi
sleep 5

depths() {
  while sleep 2; do
    ctl list_queues -p "$vhost" name messages_ready 2>/dev/null
  done >"$work/depths"
}
depths &
spid=$!
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
bare_count() { tail -1 "$work/bare" | awk '{print $2}'; }
downs_before=$(grep -c '"to":"down"' "$work/lines" 2>/dev/null)
m1=$(cpu $mpid) b1=$(cpu $bpid) f1=$(cpu $fpid) e1=$(bare_count) t1=$(date +%s.%N)
sleep "$secs"
m2=$(cpu $mpid) b2=$(cpu $bpid) f2=$(cpu $fpid) e2=$(bare_count) t2=$(date +%s.%N)
kill $spid 2>/dev/null
downs_after=$(grep -c '"to":"down"' "$work/lines" 2>/dev/null)

key_ms=-
if [ "$mode" = dashboard ]; then
  # `?` opens the help and Esc closes it; time each until the screen shows it.
  samples=()
  for _ in 1 2 3 4 5; do
    s=$(date +%s%N); tmux send-keys -t "$session" '?'
    until tmux capture-pane -p -t "$session" | grep -q '┌ keys'; do :; done
    e=$(date +%s%N); samples+=($(( (e - s) / 1000000 )))
    tmux send-keys -t "$session" Escape
    until ! tmux capture-pane -p -t "$session" | grep -q '┌ keys'; do :; done
  done
  key_ms=$(printf '%s\n' "${samples[@]}" | sort -n | sed -n 3p)
fi
rss=$(awk '/VmHWM/ {print $2}' "/proc/$mpid/status")
mq=$(awk -v q="heartbeat.monitor.$id" '$1 == q && $2 > m {m = $2} END {print m + 0}' "$work/depths")
bq=$(awk '$1 ~ /^heartbeat.monitor.bare-/ && $2 > m {m = $2} END {print m + 0}' "$work/depths")
awk -v n="$n" -v mode="$mode" -v m1="$m1" -v m2="$m2" -v b1="$b1" -v b2="$b2" -v f1="$f1" -v f2="$f2" \
    -v e1="$e1" -v e2="$e2" -v t1="$t1" -v t2="$t2" -v tck="$(getconf CLK_TCK)" -v rss="$rss" \
    -v mq="$mq" -v bq="$bq" -v bare="$bare_wanted" -v down="$((downs_after - downs_before))" -v key="$key_ms" 'BEGIN {
  el = t2 - t1; echoes = e2 - e1   # the bare consumer counts; the monitor hears the same fleet
  pingers = 2
  if (bare == "no") { echoes = n * el; pingers = 1 }   # one echo a second each
  else if (echoes == 0) { print "scale.sh: the bare consumer counted no echoes (HEARTBEAT_KEY set?)" > "/dev/stderr"; exit 1 }
  m = (m2 - m1) / tck * 1e6 / echoes; b = (pingers == 2) ? (b2 - b1) / tck * 1e6 / echoes : 0
  # The fleet answers both the monitor and the bare consumer.
  f = (f2 - f1) / tck * 1e6 / (pingers * echoes)
  printf "services=%d mode=%s seconds=%.0f echoes=%d monitor_us_per_echo=%.1f bare_us_per_echo=%.1f ratio=%.2f monitor_peak_rss_kib=%s monitor_queue_max=%s bare_queue_max=%s down=%s fleet_us_per_ping=%.1f key_ms=%s\n",
    n, mode, el, echoes, m, b, (b > 0 ? m / b : 0), rss, mq, bq, (mode == "dashboard" ? "-" : down), f, key
}'
