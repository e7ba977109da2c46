#!/usr/bin/env bash
# The test command: make sure everything the tests use is installed and
# running, then run every test. On a fresh Debian or Ubuntu machine (as
# root, or with sudo) it brings RabbitMQ, PostgreSQL, tmux, Prometheus,
# Alertmanager, Chromium, podman and systemd's tools itself. Safe on a developer's machine: it never stops or reconfigures a
# broker or a database that is already running.
#
#   scripts/test.sh                 # the whole workspace
#   scripts/test.sh -p monitor --test http   # any `cargo test` arguments
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=false
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if ! $apt_updated; then
    as_root apt-get update -qq
    apt_updated=true
  fi
  as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Install a Debian package unless the program it brings is already there.
need() {
  local program=$1 package=$2
  if ! command -v "$program" >/dev/null 2>&1; then
    log "installing $package from Debian's packages"
    apt_install "$package"
  fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

log "RabbitMQ on 127.0.0.1:5672"
if ! port_open 5672; then
  need rabbitmq-server rabbitmq-server
  as_root rabbitmq-server -detached || true
  for _ in $(seq 1 120); do
    port_open 5672 && break
    sleep 1
  done
fi
port_open 5672 || { echo "RabbitMQ did not come up on 127.0.0.1:5672"; exit 1; }
# The port opens before the broker is ready to accept logins; wait for it.
if command -v rabbitmqctl >/dev/null 2>&1; then
  timeout 120 rabbitmqctl await_startup >/dev/null 2>&1 || true
fi

log "PostgreSQL on 127.0.0.1:5432 (history tests)"
if ! port_open 5432; then
  need pg_lsclusters postgresql
  # Start every cluster Debian knows of (a fresh install has one, "main").
  pg_lsclusters --no-header 2>/dev/null | while read -r version cluster _; do
    as_root pg_ctlcluster "$version" "$cluster" start || true
  done
  for _ in $(seq 1 60); do
    port_open 5432 && break
    sleep 1
  done
fi
port_open 5432 || { echo "PostgreSQL did not come up on 127.0.0.1:5432"; exit 1; }

log "tools the end-to-end tests drive"
need tmux tmux                  # the dashboard, in a real terminal
need prometheus prometheus      # scrapes /metrics (promtool comes with it)
need chromium chromium          # loads the status page
need prometheus-alertmanager prometheus-alertmanager   # receives alerts (each test starts its own)
need openssl openssl            # makes the CA and certificate of the TLS test
# Packaging (monitor/tests/packaging.rs): scripts/package.sh builds a .deb, an
# archive and an image; the test installs the .deb into a throwaway root,
# verifies the systemd units and runs the image under podman (with runc).
need dpkg-deb dpkg
need systemd-analyze systemd
need strip binutils
need podman podman
need runc runc
[ -f /etc/ssl/certs/ca-certificates.crt ] || apt_install ca-certificates
# The Python example of docs/PROTOCOL.md runs for real: python3 and pika.
need python3 python3
python3 -c "import pika" 2>/dev/null || python3 -m pip install --quiet pika || apt_install python3-pika
# The email target's test sends through a real SMTP server: aiosmtpd.
python3 -c "import aiosmtpd" 2>/dev/null || python3 -m pip install --quiet aiosmtpd || apt_install python3-aiosmtpd
# The Node.js example runs for real too: node, and amqplib from npm at the
# versions examples/node/package-lock.json pins.
need node nodejs
need npm npm
(cd examples/node && npm ci --no-audit --no-fund --silent)

log "tests"
cargo test --workspace "$@"
