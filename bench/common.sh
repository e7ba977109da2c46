# Sourced by bench/threads.sh and bench/reconnects.sh: release builds, the
# monitor to measure (MONITOR_BIN, or this tree's), and the benchmarks' own
# vhost on the local broker, so neither their fleets nor the tests on the
# default vhost see each other. Sets `mon`, `vhost` and `url`.
mon=${MONITOR_BIN:-target/release/monitor}
cargo build --release -q -p monitor -p mock-service || exit 1
vhost=heartbeat-bench
rabbitmqctl -q add_vhost "$vhost" >/dev/null 2>&1
rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*' >/dev/null || exit 1
url="amqp://guest:guest@127.0.0.1:5672/$vhost"
