//! The settings as a user gives them: layers, ranges, one-line errors.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::*;

fn env(pairs: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn load(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
    Settings::load_with_env(None, env(pairs)).and_then(|s| s.validate().map(|()| s))
}

#[test]
fn defaults_load_and_validate() {
    let s = load(&[]).unwrap();
    assert_eq!(s.interval, Duration::from_secs(1));
    assert_eq!(s.timeout, Duration::from_secs(3));
    assert_eq!(s.broker.url, DEFAULT_BROKER_URL);
    assert!(s.expect.is_empty() && s.timeouts.is_empty() && s.id.is_empty());
    assert_eq!(s.http.listen, "", "no HTTP endpoint unless asked for");
    assert_eq!(s.max_instances, 10_000);
    assert_eq!(s.forget_after, Duration::from_secs(24 * 3600));
    for listen in ["127.0.0.1:9464", "[::1]:0", "localhost:9464", "0.0.0.0:80"] {
        let s = load(&[("MONITOR__HTTP__LISTEN", listen)]).unwrap();
        assert_eq!(s.http.listen, listen);
    }
}

#[test]
fn environment_overrides_the_defaults() {
    let s = load(&[
        ("MONITOR__INTERVAL", "500ms"),
        ("MONITOR__TIMEOUT", "2s"),
        ("MONITOR__EXPECT", "orders,payments"),
        ("MONITOR__TIMEOUTS__PAYMENTS", "10s"),
        ("MONITOR__BROKER__URL", "amqp://u:p@rabbit:5672/%2f"),
    ])
    .unwrap();
    assert_eq!(s.interval, Duration::from_millis(500));
    assert_eq!(s.expect, ["orders", "payments"]);
    assert_eq!(s.timeout_for("payments"), Duration::from_secs(10));
    assert_eq!(s.timeout_for("Payments"), Duration::from_secs(10));
    assert_eq!(s.timeout_for("orders"), Duration::from_secs(2));
    assert_eq!(s.broker.url, "amqp://u:p@rabbit:5672/%2f");
}

#[test]
fn a_file_overrides_the_defaults_and_the_environment_overrides_the_file() {
    let dir = std::env::temp_dir().join(format!("hb-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("monitor.toml");
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(
        f,
        "interval = \"2s\"\ntimeout = \"9s\"\n[timeouts]\nslow = \"30s\""
    )
    .unwrap();
    let s = Settings::load_with_env(Some(&path), env(&[("MONITOR__TIMEOUT", "7s")])).unwrap();
    assert_eq!(s.interval, Duration::from_secs(2));
    assert_eq!(s.timeout, Duration::from_secs(7));
    assert_eq!(s.timeout_for("slow"), Duration::from_secs(30));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_syntax_error_in_a_file_never_quotes_the_line() {
    let dir = std::env::temp_dir().join(format!("hb-config-syntax-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("monitor.toml");
    for text in [
        "[broker]\nurl = \"amqp://u:S3cretPW@h/%2f\n",
        "[broker]\nurl = 5 S3cretPW\n",
    ] {
        std::fs::write(&path, text).unwrap();
        let err = Settings::load_with_env(Some(&path), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("S3cretPW"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn names_in_the_config_follow_the_wire_rule() {
    let dir = std::env::temp_dir().join(format!("hb-config-names-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("monitor.toml");
    std::fs::write(&path, "[timeouts]\n\"a b\" = \"5s\"\n").unwrap();
    let err = Settings::load_with_env(Some(&path), env(&[]))
        .and_then(|s| s.validate())
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid setting `timeouts`"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
    for (pairs, expected) in [
        (&[("MONITOR__EXPECT", "orders,a\u{1b}[2J")][..], "`expect`"),
        (&[("MONITOR__ID", "ops/1")][..], "`id`"),
    ] {
        let err = load(pairs).unwrap_err().to_string();
        assert!(err.contains(expected), "{pairs:?}: {err}");
        assert!(
            !err.contains('\u{1b}'),
            "a raw escape reached the message: {err:?}"
        );
    }
}

#[test]
fn bad_values_name_the_setting_in_one_line() {
    let cases: [(&[(&str, &str)], &str); 10] = [
        (&[("MONITOR__HTTP__LISTEN", "9464")], "`http.listen`"),
        (
            &[("MONITOR__HTTP__LISTEN", "http://127.0.0.1:9464")],
            "`http.listen`",
        ),
        (
            &[("MONITOR__INTERVAL", "0s")],
            "`interval`: must be greater than zero",
        ),
        (
            &[("MONITOR__TIMEOUT", "500ms")],
            "`timeout`: 500ms is shorter than the interval (1s)",
        ),
        (&[("MONITOR__INTERVAL", "soon")], "interval"),
        (&[("MONITOR__INTERVALL", "1s")], "unknown field `intervall`"),
        (&[("MONITOR__BROKER__URL", "http://x")], "`broker.url`"),
        (&[("MONITOR__TIMEOUTS__SLOW", "10ms")], "`timeouts.slow`"),
        (
            &[("MONITOR__MAX_INSTANCES", "0")],
            "`max_instances`: must be at least 1",
        ),
        (
            &[("MONITOR__FORGET_AFTER", "1s")],
            "`forget_after`: 1s is shorter than the timeout (3s)",
        ),
    ];
    for (pairs, expected) in cases {
        let err = load(pairs).unwrap_err().to_string();
        assert!(err.contains(expected), "{pairs:?}: {err}");
        assert!(!err.contains('\n'), "more than one line: {err}");
    }
}

fn load_file(text: &str) -> Result<Settings, SettingsError> {
    let dir = std::env::temp_dir().join(format!(
        "hb-config-notify-{}-{}",
        std::process::id(),
        text.len()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("monitor.toml");
    std::fs::write(&path, text).unwrap();
    let loaded =
        Settings::load_with_env(Some(&path), env(&[])).and_then(|s| s.validate().map(|()| s));
    std::fs::remove_dir_all(dir).unwrap();
    loaded
}

#[test]
fn the_broker_url_may_be_a_list_or_one_string() {
    let s = load_file("[broker]\nurl = [\"amqp://u:pw@a/\", \"amqp://u:pw@b/\"]\n").unwrap();
    let (urls, _) = resolve_broker_url(None, &s, |_| None).unwrap();
    assert_eq!(urls.len(), 2);
    assert_eq!(urls.to_string(), "amqp://u:****@a/, amqp://u:****@b/");
    let s = load(&[("MONITOR__BROKER__URL", "amqp://a/,amqp://b/")]).unwrap();
    assert_eq!(resolve_broker_url(None, &s, |_| None).unwrap().0.len(), 2);
    let s = load_file("[broker]\nurl = \"amqp://a/\"\n").unwrap();
    assert_eq!(resolve_broker_url(None, &s, |_| None).unwrap().0.len(), 1);
    let err = load_file("[broker]\nurl = [\"amqp://a/\", \"http://b/\"]\n").unwrap_err();
    assert!(err.to_string().contains("`broker.url`"), "{err}");
}

#[test]
fn notify_entries_and_history_load_with_their_defaults() {
    let s = load_file(
        "[[notify]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:8099/hook\"\nfor = \"30s\"\n\n\
         [[notify]]\nkind = \"command\"\ncommand = [\"/bin/true\"]\ntransitions = [\"down\", \"left\"]\n\
         send_resolved = false\n\n[history]\nurl = \"postgres://u:p@db/hb\"\n",
    )
    .unwrap();
    assert_eq!(s.notify.len(), 2);
    let hook = &s.notify[0];
    assert_eq!(
        (hook.kind, hook.for_),
        (NotifyKind::Webhook, Duration::from_secs(30))
    );
    assert_eq!(hook.transitions, ["down", "flapping", "degraded"]);
    assert!(hook.send_resolved && hook.reminder.is_zero());
    assert_eq!((hook.retries, hook.queue), (3, 10_000));
    assert_eq!(
        (hook.group_wait, hook.retry_for),
        (Duration::from_secs(3), Duration::from_secs(3600))
    );
    assert_eq!(s.notify[1].transitions, ["down", "left"]);
    assert!(!s.notify[1].send_resolved);
    assert_eq!(s.history.path, "heartbeat.db");
    assert!(s.history.enabled());
    assert_eq!(s.history.retention, Duration::from_secs(30 * 24 * 3600));
    assert!(load(&[]).unwrap().notify.is_empty());
}

#[test]
fn bad_notify_and_history_settings_name_the_entry_in_one_line() {
    let cases = [
        (
            "[[notify]]\nkind = \"sms\"\n",
            "\"sms\" is not a kind of notify target; use webhook, alertmanager, command, slack or email",
        ),
        (
            "[[notify]]\nkind = \"webhook\"\n",
            "`notify[0].url` (webhook)",
        ),
        (
            "[[notify]]\nkind = \"alertmanager\"\nurl = \"ftp://x\"\n",
            "`notify[0].url` (alertmanager): \"ftp://x\" must be http:// or https://",
        ),
        (
            "[[notify]]\nkind = \"command\"\n",
            "`notify[0].command` (command)",
        ),
        (
            "[[notify]]\nkind = \"command\"\ncommand = [\"x\"]\ntransitions = [\"dwon\"]\n",
            "`notify[0].transitions` (command): \"dwon\" is not a state",
        ),
        (
            "[[notify]]\nkind = \"command\"\ncommand = [\"x\"]\nfor = \"soon\"\n",
            "for",
        ),
        (
            "[[notify]]\nkind = \"command\"\ncommand = [\"x\"]\nurll = \"\"\n",
            "unknown field `urll`",
        ),
        (
            "[history]\nurl = \"mysql://x\"\n",
            "`history.url`: must start with postgres://",
        ),
        (
            "[history]\nretention = \"1m\"\n",
            "`history.retention`: must be at least 1h",
        ),
    ];
    for (text, expected) in cases {
        let err = load_file(text).unwrap_err().to_string();
        assert!(err.contains(expected), "{text}: {err}");
        assert!(!err.contains('\n'), "more than one line: {err}");
    }
}

#[test]
fn slack_and_email_entries_are_checked_and_never_print_their_secrets() {
    let email = |rest: &str| {
        format!(
            "[[notify]]\nkind = \"email\"\nurl = \"smtp://ops:s3cr3t-pw@mail.example.org:587\"\n{rest}"
        )
    };
    let cases = [
        (
            "[[notify]]\nkind = \"slack\"\nurl = \"hooks.slack.com/services/T0/B0/t0ken-xyz\"\n"
                .to_owned(),
            "`notify[0].url` (slack): is not a URL",
        ),
        (
            "[[notify]]\nkind = \"slack\"\nurl = \"ftp://hooks.example.org/t0ken-xyz\"\n".to_owned(),
            "`notify[0].url` (slack): must be http:// or https://",
        ),
        (
            "[[notify]]\nkind = \"email\"\nurl = \"http://ops:s3cr3t-pw@mail.example.org\"\nfrom = \"a@b\"\nto = [\"c@d\"]\n"
                .to_owned(),
            "`notify[0].url` (email): \"http://ops:****@mail.example.org\" must be smtp://",
        ),
        (email("to = [\"c@d\"]\n"), "`notify[0].from` (email)"),
        (
            email("from = \"Heartbeat <alerts@example.org>\"\n"),
            "`notify[0].to` (email): needs at least one address",
        ),
        (
            email("from = \"alerts@example.org\"\nto = [\"oncall example.org\"]\n"),
            "`notify[0].to` (email): \"oncall example.org\" is not an address",
        ),
        (
            email("from = \"a@b\"\nto = [\"c@d\"]\nca_file = \"/nonexistent/ca.pem\"\n"),
            "`notify[0].ca_file` (email): cannot read",
        ),
        (
            email("from = \"a@b\"\nto = [\"c@d\"]\nstatus_page = \"status.example.org\"\n"),
            "`notify[0].status_page` (email)",
        ),
    ];
    for (text, expected) in cases {
        let err = load_file(&text).unwrap_err().to_string();
        assert!(err.contains(expected), "{text}: {err}");
        assert!(!err.contains('\n'), "more than one line: {err}");
        assert!(
            !err.contains("s3cr3t-pw") && !err.contains("t0ken-xyz"),
            "a secret in: {err}"
        );
    }
    let s = load_file(&email(
        "from = \"Heartbeat <alerts@example.org>\"\nto = [\"oncall@example.org\"]\n",
    ))
    .unwrap();
    assert_eq!(s.notify[0].kind, NotifyKind::Email);
    let s = load_file("[[notify]]\nkind = \"slack\"\nurl = \"https://hooks.slack.com/services/T0/B0/x\"\nstatus_page = \"https://status.example.org/\"\n").unwrap();
    assert_eq!(s.notify[0].kind, NotifyKind::Slack);
}

#[test]
fn a_missing_config_file_is_an_error() {
    let err = Settings::load_with_env(Some(Path::new("/nonexistent/monitor.toml")), env(&[]))
        .unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/monitor.toml"),
        "{err}"
    );
}

#[test]
fn broker_url_precedence() {
    let s = load(&[]).unwrap();
    let vars = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    };
    let both = vars(&[
        ("CLOUDAMQP_URL", "amqps://c:pw@cloud/v"),
        ("AMQP_URL", "amqp://a@local/"),
    ]);
    assert_eq!(
        resolve_broker_url(Some("amqp://flag/"), &s, both)
            .unwrap()
            .1,
        UrlSource::Flag
    );
    let (url, source) = resolve_broker_url(None, &s, both).unwrap();
    assert_eq!(
        (url.to_string().as_str(), source),
        ("amqps://c:****@cloud/v", UrlSource::CloudAmqpUrl)
    );
    let (urls, _) = resolve_broker_url(Some("amqp://a/,amqp://u:pw@b/"), &s, both).unwrap();
    assert_eq!(urls.to_string(), "amqp://a/, amqp://u:****@b/");
    let amqp_only = vars(&[("CLOUDAMQP_URL", ""), ("AMQP_URL", "amqp://a@local/")]);
    assert_eq!(
        resolve_broker_url(None, &s, amqp_only).unwrap().1,
        UrlSource::AmqpUrl
    );
    assert_eq!(
        resolve_broker_url(None, &s, vars(&[])).unwrap().1,
        UrlSource::Default
    );
    let configured = load(&[("MONITOR__BROKER__URL", "amqp://u:pw@elsewhere/")]).unwrap();
    assert_eq!(
        resolve_broker_url(None, &configured, vars(&[])).unwrap().1,
        UrlSource::Settings
    );
    let err = resolve_broker_url(None, &s, vars(&[("CLOUDAMQP_URL", "nope")])).unwrap_err();
    assert!(err.to_string().ends_with("(from CLOUDAMQP_URL)"), "{err}");
}

#[test]
fn phi_threshold_and_acceptable_pause_have_a_range_and_name_their_variable() {
    for threshold in ["400", "31", "0.1", "NaN", "inf"] {
        let err = load(&[("MONITOR__DETECTION__PHI_THRESHOLD", threshold)])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`detection.phi_threshold` (from the environment: MONITOR__DETECTION__PHI_THRESHOLD)")
                && err.contains("between 0.5 and 30"),
            "{threshold}: {err}"
        );
    }
    for threshold in ["0.5", "8", "30"] {
        load(&[("MONITOR__DETECTION__PHI_THRESHOLD", threshold)]).unwrap();
    }
    let err = load(&[(
        "MONITOR__SERVICES__SLOW__PHI_ACCEPTABLE_PAUSE",
        "1000000000h",
    )])
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("`services.slow.phi_acceptable_pause` (from the environment: MONITOR__SERVICES__SLOW__PHI_ACCEPTABLE_PAUSE)"),
        "{err}"
    );
    // From a file, no variable is blamed.
    let err = load_file("[detection]\nphi_threshold = 400.0\n")
        .unwrap_err()
        .to_string();
    assert!(!err.contains("environment"), "{err}");
}

#[test]
fn a_value_the_environment_cannot_parse_names_its_variable() {
    for (variable, value) in [
        ("MONITOR__INTERVAL", "soon"),
        ("MONITOR__DETECTION__PHI_THRESHOLD", "abc"),
        ("MONITOR__DETECTION__FAILURES_BEFORE_DOWN", "-1"),
    ] {
        let err = load(&[(variable, value)]).unwrap_err().to_string();
        assert!(
            err.contains(&format!("(from the environment: {variable})")),
            "{variable}: {err}"
        );
        assert!(!err.contains('\n'), "{err}");
    }
}

#[test]
fn scope_and_budget_load_from_the_environment_and_are_checked() {
    let s = load(&[]).unwrap();
    assert_eq!(s.scope, "default");
    assert!(!s.budget.enabled());
    assert_eq!(s.budget.longest_interval, Duration::from_secs(300));
    let s = load(&[
        ("MONITOR__SCOPE", "staging"),
        ("MONITOR__BUDGET__MESSAGES_PER_MONTH", "1000000"),
        ("MONITOR__BUDGET__QUEUES", "100"),
    ])
    .unwrap();
    assert_eq!(s.scope, "staging");
    assert_eq!(s.budget.messages_per_month, 1_000_000);
    assert_eq!(s.budget.queues, 100);
    let error = load(&[("MONITOR__SCOPE", "a b")]).unwrap_err().to_string();
    assert!(
        error.starts_with("invalid setting `scope`: \"a b\" is not a scope: use 1 to 32")
            && error.ends_with("(from the environment: MONITOR__SCOPE)"),
        "{error}"
    );
    let error = load(&[
        ("MONITOR__BUDGET__MESSAGES_PER_MONTH", "1000000"),
        ("MONITOR__BUDGET__LONGEST_INTERVAL", "500ms"),
    ])
    .unwrap_err()
    .to_string();
    assert!(
        error.starts_with(
            "invalid setting `budget.longest_interval`: 500ms is shorter than the interval (1s)"
        ),
        "{error}"
    );
}
