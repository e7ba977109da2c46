#!/usr/bin/env bash
# Where a monitor's CPU goes, thread by thread: a fleet of N on the local
# broker (vhost `heartbeat-bench`), then a release monitor in each MODE in
# turn, each measured for S seconds after 20 s to settle. Per thread: CPU µs
# per echo (from /proc/PID/task/TID/schedstat, in nanoseconds, so short
# windows are not rounded to 10 ms ticks) and voluntary / involuntary
# context switches a second. With the dashboard, the tmux server's CPU too.
#
# It divides by N echoes a second (one per service): run it on a quiet
# machine. bench/scale.sh is the benchmark of record (the floor beside the
# monitor); this says which thread a change moved.
#
# usage: bench/threads.sh [SERVICES=2000] [SECONDS=40] [MODES="headless dashboard"]
#        MONITOR_BIN=... another build; TOKIO_WORKER_THREADS=1 one worker.
set -u
cd "$(dirname "$0")/.."
n=${1:-2000} secs=${2:-40} modes=${3:-headless dashboard}
. bench/common.sh
socket="threads$$" work=$(mktemp -d)
target/release/mock-service --url "$url" --name "threads$$" --instance i --count "$n" >/dev/null 2>&1 &
fleet=$!
cleanup() {
  tmux -L "$socket" kill-server 2>/dev/null
  [ -n "${mpid:-}" ] && kill -INT "$mpid" 2>/dev/null
  kill -INT "$fleet" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# tid comm cpu_ns voluntary involuntary, one line per thread
snapshot() {
  for task in /proc/"$1"/task/*; do
    echo "$(basename "$task") $(cat "$task/comm" | tr ' ' _) $(awk '{print $1}' "$task/schedstat")" \
      "$(awk '/^voluntary_ctxt/ {print $2}' "$task/status")" \
      "$(awk '/^nonvoluntary_ctxt/ {print $2}' "$task/status")"
  done | sort
}

for mode in $modes; do
  if [ "$mode" = dashboard ]; then
    tmux -L "$socket" new-session -d -s threads -x 160 -y 45 \
      "exec env MONITOR__HISTORY__PATH= $mon --url '$url' --id threads-d-$$ --log-file $work/monitor.log"
    mpid=$(tmux -L "$socket" display-message -p -t threads '#{pane_pid}')
    server=$(tmux -L "$socket" display-message -p '#{pid}')
  else
    MONITOR__HISTORY__PATH= "$mon" --headless --url "$url" --id "threads-h-$$" >/dev/null 2>&1 &
    mpid=$!
    server=
  fi
  sleep 20
  snapshot "$mpid" >"$work/before"
  [ -n "$server" ] && s1=$(awk '{print $1}' "/proc/$server/schedstat")
  sleep "$secs"
  snapshot "$mpid" >"$work/after"
  [ -n "$server" ] && s2=$(awk '{print $1}' "/proc/$server/schedstat")
  echo "$mode (services=$n seconds=$secs)"
  join "$work/before" "$work/after" | awk -v s="$secs" -v n="$n" '{
    printf "  %-16s us_per_echo=%.2f voluntary_per_s=%.0f involuntary_per_s=%.0f\n", $2, ($7 - $3) / 1000 / (s * n), ($8 - $4) / s, ($9 - $5) / s
    total += $7 - $3
  } END { printf "  %-16s us_per_echo=%.2f\n", "total", total / 1000 / (s * n) }'
  if [ -n "$server" ]; then
    awk -v a="$s1" -v b="$s2" -v s="$secs" -v n="$n" 'BEGIN { printf "  %-16s us_per_echo=%.2f\n", "(tmux server)", (b - a) / 1000 / (s * n) }'
    tmux -L "$socket" kill-server
  else
    kill -INT "$mpid"
  fi
  wait "$mpid" 2>/dev/null
  mpid=
done
