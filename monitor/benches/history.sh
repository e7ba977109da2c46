#!/usr/bin/env bash
# What keeping history costs the monitor, with the release binaries against
# the RabbitMQ on 127.0.0.1:5672 and the PostgreSQL on 127.0.0.1:5432: one
# mock-service fleet of N services, then a headless monitor for SECONDS
# without history, with SQLite, and with PostgreSQL, one after the other.
# Prints each run's CPU time, resident memory, and what the store holds.
# Run from the repository root:
#   cargo build --release && monitor/benches/history.sh [N=1000] [SECONDS=75]
set -euo pipefail
n=${1:-1000}
seconds=${2:-75}
bin=target/release
tag=hist$$
dir=$(mktemp -d)
db=${tag}_bench
pg="postgres://postgres@127.0.0.1:5432"
tick=$(getconf CLK_TCK)

"$bin/mock-service" --name "$tag" --instance f --count "$n" 2>/dev/null &
fleet=$!
monitor=
cleanup() {
  kill $fleet ${monitor:+$monitor} 2>/dev/null || true
  psql "$pg/test" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
psql "$pg/test" -qc "CREATE DATABASE $db" >/dev/null

cpu() { awk -v t="$tick" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"; }

run() {
  local mode=$1 out="$dir/$1.out"
  shift
  : >"$out"
  env "$@" "$bin/monitor" --headless --interval 1s --timeout 3s --id "$tag-$mode" >"$out" 2>"$dir/$mode.err" &
  monitor=$!
  # Measured once the whole fleet is up, so start-up is not counted.
  until [ "$(grep -c "$tag-.*first_seen" "$out" || true)" -ge "$n" ]; do sleep 0.2; done
  local start
  start=$(cpu $monitor)
  sleep "$seconds"
  local end rss
  end=$(cpu $monitor)
  rss=$(awk '/VmRSS/ { print $2 / 1024 " MB" }' "/proc/$monitor/status")
  kill -TERM $monitor
  wait $monitor || true
  monitor=
  printf '%-10s cpu %5.2f s over %s s   rss %s\n' "$mode" "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')" "$seconds" "$rss"
}

run off MONITOR__HISTORY__PATH=
run sqlite MONITOR__HISTORY__PATH="$dir/heartbeat.db"
python3 - "$dir/heartbeat.db" <<'PY'
import os, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
t = db.execute("select count(*) from transitions").fetchone()[0]
m = db.execute("select count(*) from minutes").fetchone()[0]
size = sum(os.path.getsize(p) for p in [sys.argv[1], sys.argv[1] + "-wal"] if os.path.exists(p))
print(f"           sqlite holds {t} transitions, {m} instance-minutes, {size / 1e6:.1f} MB with its WAL")
PY
run postgres MONITOR__HISTORY__URL="$pg/$db"
psql "$pg/$db" -Atc "select 'postgres holds ' || (select count(*) from transitions) || ' transitions, ' || (select count(*) from minutes) || ' instance-minutes, ' || pg_size_pretty(pg_database_size('$db'))" | sed 's/^/           /'
