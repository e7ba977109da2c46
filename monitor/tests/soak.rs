//! The soak behind `bench/soak.sh`: not part of the suite (ignored), since
//! it runs for half an hour. A monitor and a fleet on a private node; the
//! monitor's connection is closed from the broker's side every few minutes
//! and the broker is killed and restarted once, halfway. It prints one line:
//! false DOWNs and services lost (both should be 0) and the monitor's RSS at
//! the start, just before each close (`monitor_rss_kib_before_closes`, in
//! order) and at the end (should be flat), and fails if either count is not 0.

mod support;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore = "a soak of 30 minutes; run it with bench/soak.sh"]
fn soak() {
    let minutes = setting("SOAK_MINUTES", 30);
    let services = setting("SOAK_SERVICES", 500);
    let close_every = Duration::from_secs(setting("SOAK_CLOSE_EVERY_SECS", 180));
    let mut node = PrivateBroker::start();
    let url = node.url();
    let id = unique("soak");
    let mut command = Command::new(monitor_bin());
    command.args(["--headless", "--url", &url, "--id", &id]);
    let mut monitor = Proc::spawn("monitor", command);
    let count = services.to_string();
    let mut command = Command::new(mock_bin());
    command.args([
        "--url",
        &url,
        "--name",
        "soak",
        "--instance",
        "s",
        "--count",
        &count,
    ]);
    let _fleet = Proc::spawn("fleet", command);

    // Last state per service, from the transitions.
    let mut state: HashMap<String, String> = HashMap::new();
    let mut false_down = Vec::new();
    let mut tally = |lines: Vec<serde_json::Value>, state: &mut HashMap<String, String>| {
        for line in lines {
            let (Some(service), Some(to)) = (line["service"].as_str(), line["to"].as_str()) else {
                continue; // a link or stall line
            };
            if to == "down" {
                false_down.push(line.to_string());
            }
            state.insert(service.to_owned(), to.to_owned());
        }
    };
    let up = |state: &HashMap<String, String>| state.values().filter(|s| *s == "up").count() as u64;
    let deadline = Instant::now() + Duration::from_secs(180);
    while up(&state) < services {
        assert!(
            Instant::now() < deadline,
            "only {} of {services} UP",
            up(&state)
        );
        tally(monitor.drain_json(Duration::from_secs(1)), &mut state);
    }
    let rss_start = monitor.rss_kib();

    let start = Instant::now();
    let end = start + Duration::from_secs(60 * minutes);
    let mut next_close = start + close_every;
    let mut restarted = false;
    let mut closes = 0;
    let mut rss_before_closes = Vec::new();
    while Instant::now() < end {
        tally(monitor.drain_json(Duration::from_secs(1)), &mut state);
        if Instant::now() >= next_close {
            rss_before_closes.push(monitor.rss_kib().to_string());
            closes += node.close_connections_of(&id);
            next_close += close_every;
        }
        if !restarted && Instant::now() >= start + (end - start) / 2 {
            node.kill();
            node.spawn();
            restarted = true;
        }
    }
    // Let the last disturbance settle before counting who is not UP.
    tally(monitor.drain_json(Duration::from_secs(30)), &mut state);
    let lost = services.saturating_sub(up(&state));
    let rss_end = monitor.rss_kib();
    println!(
        "soak: services={services} minutes={minutes} monitor_connection_closes={closes} \
         broker_restarts={} false_down={} lost={lost} monitor_rss_kib_start={rss_start} \
         monitor_rss_kib_before_closes={} monitor_rss_kib_end={rss_end}",
        u8::from(restarted),
        false_down.len(),
        rss_before_closes.join(","),
    );
    assert!(
        false_down.is_empty(),
        "false DOWNs:\n{}",
        false_down.join("\n")
    );
    assert_eq!(lost, 0, "services not UP at the end");
}
