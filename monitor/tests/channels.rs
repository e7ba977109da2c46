//! The channels teams use, end to end with the real binaries: a Slack
//! (and Mattermost) incoming webhook, a Slack-shaped HTTP endpoint this
//! test runs, and email through a real SMTP server (aiosmtpd) that demands
//! STARTTLS and a login. The bodies are checked, and neither the webhook's
//! token nor the SMTP password is ever printed, at any log level.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::smtp::Smtp;
use support::*;

/// A config file in `dir` with `body`, and its path.
fn config(dir: &TempDir, body: &str) -> String {
    let file = dir.0.join("monitor.toml");
    std::fs::write(&file, body).unwrap();
    file.display().to_string()
}

/// The README's TOML example (in "Keeping it quiet") with `kind`, with
/// `replace`'s pairs replaced, each of which must be there: the test runs
/// what a reader copies.
fn readme_example(kind: &str, replace: &[(&str, &str)]) -> String {
    let readme = include_str!("../../README.md");
    let section = &readme[readme.find("## Keeping it quiet").expect("the section")..];
    let kind_line = format!("kind = \"{kind}\"\n");
    let example = section
        .split("```toml\n")
        .skip(1)
        .map(|block| &block[..block.find("```").unwrap()])
        .find(|block| block.contains(&kind_line))
        .unwrap_or_else(|| panic!("no {kind} example in the README's \"Keeping it quiet\""));
    let mut text = example.to_owned();
    for (from, to) in replace {
        assert!(
            text.contains(from),
            "the README's {kind} example changed shape: no {from:?} in\n{example}"
        );
        text = text.replace(from, to);
    }
    text
}

/// A Slack attachment's field by title.
fn field<'a>(attachment: &'a Value, title: &str) -> Option<&'a str> {
    attachment["fields"]
        .as_array()?
        .iter()
        .find(|f| f["title"] == title)?["value"]
        .as_str()
}

#[test]
fn slack_gets_a_coloured_message_with_state_service_reason_and_a_link_to_the_status_page() {
    let dir = TempDir::new("slack");
    // The token is the path, as in https://hooks.slack.com/services/T…/B…/…
    let token = "sl4ck-t0ken-5ecret";
    let mut slack = Hook::start();
    let failing = Hook::start();
    failing.answer_with(500);
    let example = readme_example(
        "slack",
        &[(
            "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX",
            &slack.url(&format!("/services/T0HEART/B0BEAT/{token}")),
        )],
    );
    let config = config(
        &dir,
        &format!(
            "{example}\n[[notify]]\nkind = \"slack\"\nurl = \"{}\"\nretries = 0\n",
            failing.url(&format!("/services/T0HEART/B0FAIL/{token}-failing")),
        ),
    );
    // The example's `services = ["payments", "pay-*"]` hears of it.
    let service = unique("pay");
    // No `status_page` set: the link is the page this monitor serves.
    let listen = format!("127.0.0.1:{}", free_port());
    let mut monitor = monitor_with_env(
        BROKER,
        &["--config", &config, "--listen", &listen],
        &[("RUST_LOG", "trace")],
    );
    let page = format!("{}/", monitor.listen_base());
    let mut mock = mock(BROKER, &service, "s-1", &[]);
    monitor.wait_json(
        Duration::from_secs(15),
        "up",
        transition(&service, "up", "first_seen"),
    );
    mock.kill();
    monitor.wait_json(
        Duration::from_secs(10),
        "down",
        transition(&service, "down", "timed_out"),
    );
    let about = |r: &Received| {
        r.json["attachments"][0]["fields"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f["value"] == service.as_str()))
    };
    let down = slack.wait(Duration::from_secs(10), "the DOWN message", about);
    assert_eq!(down.path, format!("/services/T0HEART/B0BEAT/{token}"));
    assert_eq!(
        down.header("content-type"),
        Some("application/json"),
        "{:?}",
        down.headers
    );
    let text = down.json["text"].as_str().unwrap();
    assert_eq!(text, format!("DOWN: {service}/s-1"));
    let attachment = &down.json["attachments"][0];
    assert_eq!(attachment["color"], "#a30200", "red for an outage");
    assert_eq!(field(attachment, "State"), Some("DOWN"));
    assert_eq!(field(attachment, "Service"), Some(service.as_str()));
    assert_eq!(field(attachment, "Instance"), Some("s-1"));
    assert_eq!(field(attachment, "Reason"), Some("timed out"));
    assert_eq!(attachment["title_link"], page.as_str());
    let body = attachment["text"].as_str().unwrap();
    assert!(
        body.starts_with(&format!("{service}/s-1 is DOWN (timed out: silent for")),
        "{body}"
    );
    assert!(body.ends_with(&format!("<{page}|Status page>")), "{body}");
    assert!(
        attachment["fallback"].as_str().unwrap().contains("is DOWN"),
        "{attachment}"
    );
    assert!(attachment["ts"].is_i64(), "{attachment}");

    // Back: the resolution, in green.
    let _again = support::mock(BROKER, &service, "s-1", &[]);
    let resolved = slack.wait(Duration::from_secs(15), "the resolution", about);
    assert_eq!(
        resolved.json["text"],
        format!("RESOLVED: {service}/s-1 is UP").as_str()
    );
    let attachment = &resolved.json["attachments"][0];
    assert_eq!(attachment["color"], "#2eb886", "green for UP");
    assert_eq!(field(attachment, "State"), Some("UP"));

    // The failing one is counted and logged without its URL.
    monitor.wait_stderr(Duration::from_secs(10), "the receiver answered 500");
    let logs = monitor.stderr();
    assert!(logs.contains("notify[1] slack"), "{logs:.3000}");
    assert!(!logs.contains(token), "the webhook's token was printed");
}

#[test]
fn email_goes_out_over_starttls_with_a_login_and_a_subject_that_says_what_happened() {
    let dir = TempDir::new("email");
    // The README's example's login, on a server of the test's own.
    let password = "app-password";
    let wrong = "wrong-pa55word-never-printed";
    let mut smtp = Smtp::start("alerts@example.org", password);
    let ca_file = smtp.ca_file.display().to_string();
    let example = readme_example(
        "email",
        &[
            (
                "@smtp.example.org:587",
                &format!("@localhost:{}", smtp.port),
            ),
            (
                "# ca_file = \"/etc/heartbeat/mail-ca.pem\"",
                &format!("ca_file = \"{ca_file}\""),
            ),
        ],
    );
    // Only this test's service: on the shared broker others die too, and
    // what dies within group_wait of it would be in the same mail.
    let service = unique("mailed");
    let config = config(
        &dir,
        &format!(
            "{example}services = [\"{service}\"]\n\n[[notify]]\nkind = \"email\"\n\
             url = \"smtp://alerts%40example.org:{wrong}@localhost:{}\"\nca_file = \"{ca_file}\"\n\
             retries = 0\nfrom = \"alerts@example.org\"\nto = [\"nobody@example.org\"]\n",
            smtp.port,
        ),
    );
    let mut monitor = monitor_with_env(BROKER, &["--config", &config], &[("RUST_LOG", "trace")]);
    let mut mock = mock(BROKER, &service, "e-1", &[]);
    monitor.wait_json(
        Duration::from_secs(15),
        "up",
        transition(&service, "up", "first_seen"),
    );
    mock.kill();
    monitor.wait_json(
        Duration::from_secs(10),
        "down",
        transition(&service, "down", "timed_out"),
    );
    let subject_says =
        |what: String| move |m: &Value| m["subject"].as_str().is_some_and(|s| s.starts_with(&what));
    let down = smtp.wait_mail(
        Duration::from_secs(15),
        "the DOWN mail",
        subject_says(format!(
            "[heartbeat] {service}/e-1 is DOWN (timed out: silent for"
        )),
    );
    assert_eq!(down["tls"], true, "sent under STARTTLS: {down}");
    assert_eq!(down["authenticated"], true, "logged in: {down}");
    assert_eq!(down["mail_from"], "alerts@example.org");
    assert_eq!(
        down["rcpt_tos"],
        serde_json::json!(["oncall@example.org", "ops@example.org"])
    );
    assert_eq!(down["from"], "Heartbeat <alerts@example.org>");
    assert_eq!(down["content_type"], "text/plain");
    let body = down["body"].as_str().unwrap();
    for line in [
        format!("{service}/e-1 is DOWN (timed out: silent for"),
        "Event:      firing".to_owned(),
        format!("Service:    {service}"),
        "Instance:   e-1".to_owned(),
        "State:      DOWN since ".to_owned(),
        "Change:     SUSPECT -> DOWN (timed_out) at ".to_owned(),
        "Status page: https://status.example.org/".to_owned(),
    ] {
        assert!(body.contains(&line), "{line:?} not in:\n{body}");
    }

    let _again = support::mock(BROKER, &service, "e-1", &[]);
    let resolved = smtp.wait_mail(
        Duration::from_secs(15),
        "the resolution",
        subject_says(format!(
            "[heartbeat] {service}/e-1 is no longer DOWN: now UP"
        )),
    );
    assert!(
        resolved["body"]
            .as_str()
            .unwrap()
            .contains("Event:      resolved"),
        "{resolved}"
    );

    // The second target's login is refused: counted, logged in one line,
    // and neither password is anywhere in the monitor's output.
    smtp.wait_refused(Duration::from_secs(10));
    monitor.wait_stderr(Duration::from_secs(10), "not delivered after 1 attempts");
    smtp.expect_no_mail(Duration::from_secs(1), "a mail to nobody", |m| {
        m["rcpt_tos"][0] == "nobody@example.org"
    });
    let logs = monitor.stderr();
    assert!(logs.contains("notify[1] email"), "{logs:.3000}");
    for secret in [password, wrong] {
        assert!(!logs.contains(secret), "an SMTP password was printed");
    }
}

#[test]
fn a_storm_reaches_slack_as_one_message_naming_every_instance() {
    const COUNT: usize = 5;
    let dir = TempDir::new("slack-group");
    let mut slack = Hook::start();
    let name = unique("squall");
    // Default grouping: no group_wait set.
    let config = config(
        &dir,
        &format!(
            "[[notify]]\nkind = \"slack\"\nurl = \"{}\"\nservices = [\"{name}-*\"]\n\
             status_page = \"https://status.example.org/\"\n",
            slack.url("/services/T0HEART/B0GROUP/grouped-token"),
        ),
    );
    let mut monitor = monitor_with_env(BROKER, &["--config", &config], &[]);
    let mut fleet = mock(BROKER, &name, "s", &["--count", &COUNT.to_string()]);
    for i in 0..COUNT {
        monitor.wait_json(
            Duration::from_secs(20),
            "first seen",
            transition(&format!("{name}-{i}"), "up", "first_seen"),
        );
    }

    fleet.kill();
    for i in 0..COUNT {
        monitor.wait_json(
            Duration::from_secs(10),
            "timed out",
            transition(&format!("{name}-{i}"), "down", "timed_out"),
        );
    }
    let title = format!("{COUNT} alerts: {COUNT} DOWN (");
    let message = slack.wait(Duration::from_secs(10), "the grouped message", |r| {
        r.json["text"]
            .as_str()
            .is_some_and(|t| t.starts_with(&title))
    });
    let attachment = &message.json["attachments"][0];
    assert_eq!(attachment["title"], message.json["text"], "{attachment}");
    assert_eq!(attachment["color"], "#a30200", "red for an outage");
    assert_eq!(attachment["title_link"], "https://status.example.org/");
    assert_eq!(
        field(attachment, "Alerts"),
        Some(COUNT.to_string().as_str())
    );
    let text = attachment["text"].as_str().unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        COUNT + 1,
        "a line per alert and the link:\n{text}"
    );
    for i in 0..COUNT {
        let line = format!("• {name}-{i}/s is DOWN (timed out: silent for");
        assert!(
            lines.iter().any(|l| l.starts_with(&line)),
            "{line:?} not in:\n{text}"
        );
    }
    assert_eq!(lines[COUNT], "<https://status.example.org/|Status page>");
    // One message: no other about the fleet's firing.
    slack.expect_none(Duration::from_secs(4), "a second message", |r| {
        r.json["text"]
            .as_str()
            .is_some_and(|t| t.contains(&name) && !t.starts_with("RESOLVED"))
    });
    monitor.stop_cleanly("TERM", Duration::from_secs(8));
}
