#!/usr/bin/env bash
# Soak: a monitor and a fleet on a private RabbitMQ node for a long run,
# the monitor's connection closed from the broker's side every few minutes
# and the broker killed and restarted once. Prints one line:
#   soak: services=500 minutes=30 ... false_down=0 lost=0 monitor_rss_kib_start=...
#         monitor_rss_kib_before_closes=...,... monitor_rss_kib_end=...
# It is an ignored test (monitor/tests/soak.rs), so it shares the suite's one
# recipe for a private node. On a failure the test's own output is shown.
#
# usage: bench/soak.sh [MINUTES=30] [SERVICES=500] [CLOSE_EVERY_SECS=180]
set -uo pipefail
cd "$(dirname "$0")/.."
export SOAK_MINUTES="${1:-30}" SOAK_SERVICES="${2:-500}" SOAK_CLOSE_EVERY_SECS="${3:-180}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --release -p monitor --test soak -- --ignored --nocapture >"$log" 2>&1
status=$?
if grep -q '^soak:' "$log" && [ "$status" -eq 0 ]; then
  grep '^soak:' "$log"
else
  echo "soak.sh: the soak failed (exit $status); its output:" >&2
  tail -40 "$log" >&2
  exit 1
fi
