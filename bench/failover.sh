#!/usr/bin/env bash
# Failover: two monitors in a group on the shared broker, a webhook receiver
# and a real Alertmanager; ROUNDS times, a service is killed (-9), the
# leading monitor is killed (-9) during that incident, the service comes
# back, and a new monitor takes the dead one's place. Every notification is
# counted at the receivers. Prints one line:
#   failover: rounds=20 webhook_duplicates=0 webhook_lost=0 alertmanager_duplicates=0
#             alertmanager_lost=0 takeover_ms_median=... takeover_ms_max=...
# It is an ignored test (monitor/tests/group.rs, failover_series), so it
# shares the suite's receivers and Alertmanager recipe.
#
# usage: bench/failover.sh [ROUNDS=20]
set -uo pipefail
cd "$(dirname "$0")/.."
export FAILOVER_ROUNDS="${1:-20}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --release -p monitor --test group -- --ignored failover_series --nocapture >"$log" 2>&1
status=$?
if grep -q '^failover:' "$log" && [ "$status" -eq 0 ]; then
  grep '^failover:' "$log"
else
  echo "failover.sh: the series failed (exit $status); its output:" >&2
  grep '^failover:' "$log" >&2
  tail -40 "$log" >&2
  exit 1
fi
