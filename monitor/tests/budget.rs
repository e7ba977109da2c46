//! Hosted-plan budgets (issue 23), end to end: the real monitor with
//! `[budget]` and real fleets (mock-service --count) on the real broker.
//! The interval in force, in the status API and /metrics, is the one the
//! formula gives for 2, 20 and 200 services on a plan of 1M messages a
//! month (each fleet in a scope of its own, so nothing else on the shared
//! vhost is counted); and over a run on a private node with the
//! management plugin, what the broker itself counted (`publish` and
//! `deliver_get`) is the monitor's projection within 5%.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;

use support::*;

/// ceil((1 + 3N) × 2,592,000,000 ms / budget): budget.rs's formula, written
/// out again here so the test does not take the code's word for it.
fn formula_ms(services: u64, budget: u64) -> u64 {
    ((1 + 3 * services) * 2_592_000_000).div_ceil(budget)
}

fn scope_name(prefix: &str) -> String {
    let name = unique(prefix);
    assert!(name.len() <= 32, "{name}");
    name
}

fn budget_env(per_month: u64) -> Vec<(&'static str, String)> {
    vec![
        ("MONITOR__BUDGET__MESSAGES_PER_MONTH", per_month.to_string()),
        ("MONITOR__BUDGET__LONGEST_INTERVAL", "1h".to_owned()),
    ]
}

#[test]
fn a_million_a_month_pings_2_20_and_200_services_at_the_formulas_interval() {
    let cases: Vec<(u64, String)> = [2u64, 20, 200]
        .into_iter()
        .map(|n| (n, scope_name("bud")))
        .collect();
    // Each fleet first, whole: the monitor learns of services only by
    // pinging them, so a fleet still coming up when a long interval is
    // chosen is counted at the ping after it (README, "Hosted-plan budgets").
    let fleets: Vec<Proc> = cases
        .iter()
        .map(|(n, scope)| {
            mock(
                BROKER,
                &unique("plan"),
                "i",
                &["--scope", scope, "--count", &n.to_string()],
            )
        })
        .collect();
    for fleet in &fleets {
        fleet.wait_stderr(Duration::from_secs(60), "connected");
    }
    let mut running = Vec::new();
    for ((n, scope), fleet) in cases.iter().zip(fleets) {
        let env = budget_env(1_000_000);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (monitor, base) = http_monitor_with(BROKER, &["--scope", scope], &env);
        running.push((*n, monitor, fleet, base));
    }
    for (n, _monitor, _fleet, base) in &running {
        let want = formula_ms(*n, 1_000_000);
        let document = wait_for(
            Duration::from_secs(60),
            &format!("{n} services pinged every {want} ms"),
            || {
                let document = status_document(base);
                let monitor = &document["monitor"];
                (monitor["interval_ms"] == want && monitor["cost"]["answering"] == *n)
                    .then_some(document)
            },
        );
        let cost = &document["monitor"]["cost"];
        assert_eq!(cost["messages_per_round"], 1 + 3 * n, "{cost}");
        assert_eq!(cost["budget_per_month"], 1_000_000, "{cost}");
        assert_eq!(cost["within_budget"], true, "{cost}");
        let projected = cost["projected_per_month"].as_u64().unwrap();
        assert!(
            (999_000..=1_000_000).contains(&projected),
            "{n}: {projected}"
        );
        // The timeout follows: TIMEOUT_MS at INTERVAL_MS, scaled.
        let timeout = cost["timeout_ms"].as_u64().unwrap();
        let scaled = TIMEOUT_MS as f64 * want as f64 / INTERVAL_MS as f64;
        assert!(
            (timeout as f64 - scaled).abs() <= 1.0,
            "{timeout} vs {scaled}"
        );
        let metrics = http_get(&format!("{base}/metrics")).unwrap().1;
        let interval = metric_in(&metrics, "heartbeat_interval_seconds").unwrap();
        assert!((interval - want as f64 / 1000.0).abs() < 1e-6, "{interval}");
        assert_eq!(
            metric_in(&metrics, "heartbeat_messages_per_round"),
            Some((1 + 3 * n) as f64)
        );
        assert_eq!(
            metric_in(&metrics, "heartbeat_budget_messages_per_month"),
            Some(1_000_000.0)
        );
        // Every service of the fleet is UP in the document.
        let up = document["services"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["state"] == "up")
            .count();
        assert_eq!(up as u64, *n, "{n} services UP");
    }
}

/// The broker's own count of publishes and deliveries (`/api/overview`).
fn broker_count(management: &str) -> u64 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .get(&format!("{management}/api/overview"))
        .header("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")
        .call()
        .expect("the management API answers");
    let body: Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    let stats = &body["message_stats"];
    stats["publish"].as_u64().unwrap_or(0) + stats["deliver_get"].as_u64().unwrap_or(0)
}

#[test]
fn the_projection_holds_within_5_percent_of_what_the_broker_counted() {
    let node = PrivateBroker::start_with_management();
    let management = node.management_url().expect("a management listener");
    // 4 services, 13 messages a round: a budget for a 500 ms interval, so
    // a minute holds enough rounds that one more or less is not 5%.
    let services = 4u64;
    let budget = (1 + 3 * services) * 2_592_000 * 2;
    assert_eq!(formula_ms(services, budget), 500);
    let env = budget_env(budget);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (_monitor, base) = http_monitor_with(&node.url(), &[], &env);
    let _fleet = mock(
        &node.url(),
        &unique("run"),
        "i",
        &["--count", &services.to_string()],
    );
    wait_for(Duration::from_secs(60), "500 ms for 4 services", || {
        let monitor = status_document(&base)["monitor"].clone();
        (monitor["interval_ms"] == 500 && monitor["cost"]["answering"] == services).then_some(())
    });
    let projected = status_document(&base)["monitor"]["cost"]["projected_per_month"]
        .as_u64()
        .unwrap() as f64;
    // The broker's figures are refreshed every collect_statistics_interval
    // (500 ms here): read at a change, so each end is fresh.
    let fresh = || {
        let before = broker_count(&management);
        wait_for(Duration::from_secs(10), "the broker's count moves", || {
            let now = broker_count(&management);
            (now != before).then_some((now, Instant::now()))
        })
    };
    let (first, started) = fresh();
    std::thread::sleep(Duration::from_secs(60));
    let (last, ended) = fresh();
    let seconds = ended.duration_since(started).as_secs_f64();
    let measured = (last - first) as f64 * 2_592_000.0 / seconds;
    let off = (measured - projected).abs() / projected;
    eprintln!(
        "projected {projected:.0}/month; the broker counted {} in {seconds:.1}s: {measured:.0}/month ({:.2}% off)",
        last - first,
        off * 100.0
    );
    assert!(off <= 0.05, "{measured} against {projected}");
}
