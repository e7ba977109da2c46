//! The dashboard in a real terminal: `monitor` runs inside tmux at 80x24, keys
//! are sent with `send-keys`, and the screen is read with `capture-pane`.

mod support;

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use support::{
    BROKER, Database, INTERVAL_MS, Proc, TIMEOUT_MS, mock, mock_bin, monitor_bin, transition,
    unique,
};

/// The shell line tmux runs: the monitor (with `env` assignments before it),
/// then its exit code, then a pause so the pane outlives it and can be read.
fn under_shell(env: &str, args: &[&str]) -> String {
    // No history file in the working directory: each run starts afresh.
    let mut line = format!("unset CLOUDAMQP_URL AMQP_URL RUST_LOG; MONITOR__HISTORY__PATH= {env} ");
    line.push_str(&shell_quote(&monitor_bin().to_string_lossy()));
    for arg in args {
        line.push(' ');
        line.push_str(&shell_quote(arg));
    }
    line.push_str("; echo EXITED:$?; sleep 600");
    line
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// A private tmux server with one 80x24 pane, killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(shell_line: &str) -> Self {
        let tmux = Self {
            socket: unique("tmux"),
        };
        let status = tmux
            .command()
            .args(["new-session", "-d", "-x", "80", "-y", "24", "sh", "-c"])
            .arg(shell_line)
            .status()
            .unwrap_or_else(|e| panic!("cannot run tmux ({e}); install it: apt-get install tmux"));
        assert!(status.success(), "tmux new-session failed: {status}");
        tmux
    }

    fn command(&self) -> Command {
        let mut command = Command::new("tmux");
        command.args(["-L", &self.socket, "-f", "/dev/null"]);
        command
    }

    fn output(&self, args: &[&str]) -> String {
        let output = self.command().args(args).output().expect("tmux runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The screen as text; with `colours`, SGR escapes are kept.
    fn capture(&self, colours: bool) -> String {
        let mut args = vec!["capture-pane", "-p", "-t", "0"];
        if colours {
            args.push("-e");
        }
        self.output(&args)
    }

    fn keys(&self, keys: &[&str]) {
        for key in keys {
            let status = self
                .command()
                .args(["send-keys", "-t", "0", key])
                .status()
                .expect("tmux runs");
            assert!(status.success());
        }
    }

    fn text(&self, text: &str) {
        let status = self
            .command()
            .args(["send-keys", "-t", "0", "-l", text])
            .status()
            .expect("tmux runs");
        assert!(status.success());
    }

    /// Wait until some line of the screen satisfies `test`; return that line.
    fn wait_line(&self, within: Duration, what: &str, test: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            let screen = self.capture(false);
            if let Some(line) = screen.lines().find(|line| test(line)) {
                return line.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no line {what} within {within:?}; the screen:\n{screen}"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn alternate_screen_on(&self) -> bool {
        self.output(&["display-message", "-p", "-t", "0", "#{alternate_on}"])
            .trim()
            == "1"
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").status();
    }
}

/// Short enough to show whole in the 16-column service cell, unique enough
/// to share the broker with other runs.
fn short_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("ui{:08x}", nanos ^ std::process::id().rotate_left(16))
}

/// The state of `name`'s row is drawn red when DOWN.
fn row_is_red(tmux: &Tmux, name: &str) -> bool {
    // Red as 8 colours (31) or as 256 colours (38;5;1).
    state_drawn_in(tmux, name, "DOWN", &["31m", "38;5;1m"])
}

/// `name`'s row shows `label` in one of these colours (SGR endings).
fn state_drawn_in(tmux: &Tmux, name: &str, label: &str, colours: &[&str]) -> bool {
    tmux.capture(true)
        .lines()
        .filter(|line| line.contains(name))
        .any(|line| {
            line.split(label)
                .next()
                .and_then(|before| before.rsplit("\x1b[").next())
                .is_some_and(|sgr| colours.iter().any(|c| sgr.ends_with(c)))
        })
}

fn quit_and_check_the_terminal_is_restored(tmux: &Tmux) {
    tmux.keys(&["q"]);
    let exited = tmux.wait_line(Duration::from_secs(10), "with the exit code", |line| {
        line.starts_with("EXITED:")
    });
    assert_eq!(exited, "EXITED:0", "{}", tmux.capture(false));
    assert!(
        !tmux.alternate_screen_on(),
        "the alternate screen is still on after quitting"
    );
    // Back on the normal screen: nothing of the dashboard is left on it.
    let screen = tmux.capture(false);
    assert!(!screen.contains("SERVICE"), "{screen}");
}

#[test]
fn a_mock_comes_up_goes_down_on_ctrl_c_and_q_restores_the_terminal() {
    let name = short_name();
    let tmux = Tmux::start(&under_shell(
        "",
        &[
            "--url",
            BROKER,
            "--id",
            &unique("dash"),
            "--interval",
            &format!("{INTERVAL_MS}ms"),
            "--timeout",
            &format!("{TIMEOUT_MS}ms"),
        ],
    ));
    tmux.wait_line(Duration::from_secs(20), "saying connected", |line| {
        line.contains("● connected")
    });
    assert!(tmux.alternate_screen_on());
    // Other tests share the broker: show only our service.
    tmux.keys(&["/"]);
    tmux.text(&name);
    tmux.keys(&["Enter"]);

    let mut service = mock(BROKER, &name, "i1", &[]);
    tmux.wait_line(Duration::from_secs(20), "with the mock UP", |line| {
        line.starts_with(&name) && line.contains(" i1 ") && line.contains(" UP ")
    });

    service.signal("INT");
    let row = tmux.wait_line(Duration::from_secs(5), "with the mock LEFT", |line| {
        line.starts_with(&name) && line.contains(" LEFT ")
    });
    assert!(row.contains(" i1 "), "{row}");
    // A planned shutdown is grey, not red: dark grey as 8 colours (90) or 256 (38;5;8).
    assert!(
        state_drawn_in(&tmux, &name, "LEFT", &["90m", "38;5;8m"]),
        "{}",
        tmux.capture(true)
    );
    tmux.wait_line(Duration::from_secs(2), "logging the goodbye", |line| {
        line.contains(&format!("{name}/i1 UP → LEFT  left (goodbye)"))
    });
    assert!(service.wait_exit(Duration::from_secs(5)).success());

    quit_and_check_the_terminal_is_restored(&tmux);
}

#[test]
fn the_demo_needs_no_broker_and_its_keys_crash_and_revive_a_service() {
    // Point every URL source at a closed port: the demo must not care.
    let tmux = Tmux::start(&under_shell("AMQP_URL=amqp://127.0.0.1:1", &["--demo"]));
    tmux.wait_line(Duration::from_secs(20), "with search UP", |line| {
        line.starts_with("search ") && line.contains(" UP ")
    });
    let header = tmux.capture(false);
    assert!(header.contains("in-process demo (no broker)"), "{header}");

    tmux.keys(&["/"]);
    tmux.text("search");
    tmux.keys(&["Enter", "c"]);
    tmux.wait_line(Duration::from_secs(10), "with search DOWN", |line| {
        line.starts_with("search ") && line.contains(" DOWN ")
    });
    assert!(row_is_red(&tmux, "search"), "{}", tmux.capture(true));
    tmux.wait_line(Duration::from_secs(2), "logging the timeout", |line| {
        line.contains("search/search-1 SUSPECT → DOWN  timed out")
    });

    tmux.keys(&["r"]);
    tmux.wait_line(Duration::from_secs(10), "with search UP again", |line| {
        line.starts_with("search ") && line.contains(" UP ")
    });
    tmux.wait_line(Duration::from_secs(2), "logging the recovery", |line| {
        line.contains("search/search-1 DOWN → UP  recovered")
    });

    quit_and_check_the_terminal_is_restored(&tmux);
}

/// After a restart, the event log shows what the earlier run stored. The
/// second run points at a closed broker port, so nothing live can push the
/// restored lines off the screen.
fn the_event_log_comes_back_after_a_restart(store: (&str, &str)) {
    let name = short_name();
    let mut first = {
        let mut command = Command::new(monitor_bin());
        command
            .args(["--headless", "--url", BROKER, "--id", &unique("dash")])
            .args(["--interval", &format!("{INTERVAL_MS}ms")])
            .args(["--timeout", &format!("{TIMEOUT_MS}ms")])
            .env(store.0, store.1);
        Proc::spawn("first run", command)
    };
    let service = mock(BROKER, &name, "i1", &[]);
    first.wait_json(
        Duration::from_secs(10),
        "first seen",
        transition(&name, "up", "first_seen"),
    );
    service.signal("INT");
    first.wait_json(
        Duration::from_secs(2),
        "left",
        transition(&name, "left", "left"),
    );
    first.stop_cleanly("TERM", Duration::from_secs(8));
    // The first run saw every service on the shared broker; keep ours only,
    // so that other tests' services cannot push ours off the screen. A
    // monitor reads back its own fleet's records only: ours are moved to the
    // second run's fleet (the closed port), as if it watched the same broker.
    let keep_only = format!(
        "DELETE FROM transitions WHERE service <> '{name}';
         UPDATE transitions SET fleet = '127.0.0.1:1/%2f'"
    );
    if store.0 == "MONITOR__HISTORY__URL" {
        let mut client = postgres::Client::connect(store.1, postgres::NoTls).unwrap();
        client.batch_execute(&keep_only).unwrap();
    } else {
        let db = rusqlite::Connection::open(store.1).unwrap();
        db.execute_batch(&keep_only).unwrap();
    }

    let env = format!("{}={}", store.0, shell_quote(store.1));
    let tmux = Tmux::start(&under_shell(
        &env,
        &["--url", "amqp://127.0.0.1:1", "--id", &unique("dash")],
    ));
    tmux.wait_line(
        Duration::from_secs(20),
        "with the earlier goodbye",
        |line| line.contains(&format!("{name}/i1 UP → LEFT  left (earlier run)")),
    );
    tmux.wait_line(
        Duration::from_secs(2),
        "with the earlier first echo",
        |line| {
            line.contains(&format!(
                "{name}/i1 NEVER SEEN → UP  first seen (earlier run)"
            ))
        },
    );
    quit_and_check_the_terminal_is_restored(&tmux);
}

/// What a first run left in its store: `name`/i1 DOWN, in the fleet the
/// second run watches. That fleet is a closed broker port, so nothing live
/// answers it or crowds the screen.
#[test]
fn an_instance_down_before_a_restart_is_down_on_the_dashboard_after_it() {
    let dir = std::env::temp_dir().join(unique("dash-restore"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("heartbeat.db");
    let settings = heartbeat_config::HistorySettings {
        path: path.to_string_lossy().into_owned(),
        url: String::new(),
        retention: Duration::from_secs(30 * 24 * 3600),
        timeout: Duration::from_secs(5),
    };
    let name = short_name();
    let mut store = monitor::history::open(&settings).expect("a fresh store");
    store
        .write(&monitor::history::Batch {
            by: monitor::history::WrittenBy {
                fleet: "127.0.0.1:1/%2f".into(),
                monitor: "first".into(),
            },
            transitions: vec![monitor::history::StoredTransition {
                at_ms: chrono::Utc::now().timestamp_millis() - 5_000,
                service: name.clone(),
                instance: "i1".into(),
                from: "suspect".into(),
                to: "down".into(),
                reason: "timed_out".into(),
                rtt_ms: None,
                silent_ms: Some(3_000),
            }],
            ..Default::default()
        })
        .unwrap();
    drop(store);

    let env = format!("MONITOR__HISTORY__PATH={}", shell_quote(&settings.path));
    let tmux = Tmux::start(&under_shell(
        &env,
        &["--url", "amqp://127.0.0.1:1", "--id", &unique("dash")],
    ));
    // Its row in the table (the event log's lines have an arrow).
    let row = tmux.wait_line(
        Duration::from_secs(20),
        "with the restored instance's row DOWN",
        |line| line.contains(&name) && line.contains(" i1 ") && !line.contains('→'),
    );
    assert!(row.contains("DOWN"), "{row}\n{}", tmux.capture(false));
    let red = tmux
        .capture(true)
        .lines()
        .filter(|line| line.contains(&name) && !line.contains('→'))
        .any(|line| {
            line.split("DOWN")
                .next()
                .and_then(|before| before.rsplit("\x1b[").next())
                .is_some_and(|sgr| sgr.ends_with("31m") || sgr.ends_with("38;5;1m"))
        });
    assert!(red, "not drawn as an outage:\n{}", tmux.capture(false));
    quit_and_check_the_terminal_is_restored(&tmux);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_event_log_comes_back_after_a_restart_with_sqlite() {
    let dir = std::env::temp_dir().join(unique("dash-history"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("heartbeat.db");
    the_event_log_comes_back_after_a_restart(("MONITOR__HISTORY__PATH", &path.to_string_lossy()));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_event_log_comes_back_after_a_restart_with_postgresql() {
    let db = Database::create();
    the_event_log_comes_back_after_a_restart(("MONITOR__HISTORY__URL", &db.url()));
}

#[test]
fn the_log_file_is_private_in_the_state_directory_and_no_planted_link_is_followed() {
    use std::os::unix::fs::PermissionsExt;
    let state = std::env::temp_dir().join(unique("xdg"));
    let tmux = Tmux::start(&under_shell(
        &format!("XDG_STATE_HOME={}", shell_quote(&state.to_string_lossy())),
        &["--demo"],
    ));
    let log = state.join("heartbeat/monitor.log");
    tmux.wait_line(Duration::from_secs(20), "with search UP", |line| {
        line.starts_with("search ") && line.contains(" UP ")
    });
    tmux.keys(&["?"]);
    tmux.wait_line(Duration::from_secs(5), "naming the log file", |line| {
        line.contains("heartbeat/monitor.log")
    });
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&log), 0o600);
    assert_eq!(mode(log.parent().unwrap()), 0o700);
    assert!(std::fs::read_to_string(&log).unwrap().contains("demo"));
    tmux.keys(&["Escape"]);
    quit_and_check_the_terminal_is_restored(&tmux);

    // Someone plants a link where --log-file points: refused, target untouched.
    let victim = state.join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let planted = state.join("planted.log");
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    let tmux = Tmux::start(&under_shell(
        "",
        &["--demo", "--log-file", &planted.to_string_lossy()],
    ));
    let exited = tmux.wait_line(Duration::from_secs(10), "with the exit code", |line| {
        line.starts_with("EXITED:")
    });
    assert_eq!(exited, "EXITED:2", "{}", tmux.capture(false));
    assert!(tmux.capture(false).contains("cannot write the log file"));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    std::fs::remove_dir_all(&state).unwrap();
}

/// The log file's trouble is said on the terminal, one line before the
/// dashboard starts (it stays there after quitting), not only in the `?`
/// overlay; and a --log-file another user owns is refused (issue 24).
#[test]
fn trouble_with_the_log_file_is_one_line_on_the_terminal() {
    let state = std::env::temp_dir().join(unique("xdg"));
    std::fs::create_dir_all(state.join("heartbeat")).unwrap();
    let victim = state.join("victim");
    std::fs::write(&victim, "precious").unwrap();
    std::os::unix::fs::symlink(&victim, state.join("heartbeat/monitor.log")).unwrap();
    let tmux = Tmux::start(&under_shell(
        &format!(
            "unset STATE_DIRECTORY; XDG_STATE_HOME={}",
            shell_quote(&state.to_string_lossy())
        ),
        &["--demo"],
    ));
    tmux.wait_line(Duration::from_secs(20), "with search UP", |line| {
        line.starts_with("search ") && line.contains(" UP ")
    });
    quit_and_check_the_terminal_is_restored(&tmux);
    // Joined: the line is wider than the pane.
    let screen = tmux.output(&["capture-pane", "-p", "-J", "-t", "0"]);
    let said: Vec<&str> = screen
        .lines()
        .filter(|line| line.starts_with("monitor: no log file"))
        .collect();
    assert_eq!(said.len(), 1, "{screen}");
    assert!(said[0].contains("symbolic link"), "{screen}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");

    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let theirs = state.join("theirs.log");
        std::fs::write(&theirs, "").unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        let tmux = Tmux::start(&under_shell(
            "",
            &["--demo", "--log-file", &theirs.to_string_lossy()],
        ));
        let exited = tmux.wait_line(Duration::from_secs(10), "with the exit code", |line| {
            line.starts_with("EXITED:")
        });
        assert_eq!(exited, "EXITED:2", "{}", tmux.capture(false));
        let screen = tmux.output(&["capture-pane", "-p", "-J", "-t", "0"]);
        assert!(screen.contains("belongs to another user"), "{screen}");
        assert_eq!(std::fs::read_to_string(&theirs).unwrap(), "");
    }
    std::fs::remove_dir_all(&state).unwrap();
}

#[test]
fn esc_backs_out_and_never_quits() {
    let tmux = Tmux::start(&under_shell("AMQP_URL=amqp://127.0.0.1:1", &["--demo"]));
    tmux.wait_line(Duration::from_secs(20), "with search UP", |line| {
        line.starts_with("search ") && line.contains(" UP ")
    });
    tmux.keys(&["Enter"]);
    tmux.wait_line(Duration::from_secs(5), "with the detail view", |line| {
        line.contains("transitions, newest first")
    });
    tmux.keys(&["Escape"]);
    tmux.wait_line(Duration::from_secs(5), "with the list again", |line| {
        line.starts_with("SERVICE")
    });
    // The Esc too many, as a habit from other tools: the list stays.
    tmux.keys(&["Escape", "Escape"]);
    // Keys are read in order: if Esc had quit, nothing would open the help.
    tmux.keys(&["?"]);
    tmux.wait_line(Duration::from_secs(5), "with the help open", |line| {
        line.contains("┌ keys")
    });
    assert!(!tmux.capture(false).contains("EXITED"));
    quit_and_check_the_terminal_is_restored(&tmux);
}

#[test]
fn a_second_process_with_the_same_service_and_instance_exits_2_after_a_grace() {
    let name = short_name();
    let mut monitor = support::monitor(BROKER, &[]);
    let _first = mock(BROKER, &name, "dup", &[]);
    monitor.wait_json(
        Duration::from_secs(10),
        "first seen",
        transition(&name, "up", "first_seen"),
    );
    // As a user would start it, in a terminal.
    let line = format!(
        "unset CLOUDAMQP_URL AMQP_URL RUST_LOG; {} --name {name} --instance dup --url {}; echo EXITED:$?; sleep 600",
        shell_quote(&mock_bin().to_string_lossy()),
        shell_quote(BROKER)
    );
    let started = Instant::now();
    let tmux = Tmux::start(&line);
    let exited = tmux.wait_line(Duration::from_secs(20), "with the exit code", |line| {
        line.starts_with("EXITED:")
    });
    // Wrapped lines joined: the message is longer than the pane is wide.
    let screen = tmux.output(&["capture-pane", "-p", "-J", "-t", "0"]);
    assert_eq!(exited, "EXITED:2", "{screen}");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "no grace for a restart race: {screen}"
    );
    assert!(
        screen.contains(&format!(
            "mock-service: another process already runs {name}/dup"
        )),
        "{screen}"
    );
    // The first one was never disturbed.
    monitor.expect_no_json(Duration::from_millis(500), "the first disturbed", |v| {
        v["service"] == name.as_str() && v["to"] != "up"
    });
}

/// Whether `screen` (captured with `-e`) sets any colour: SGR 30-38, 40-48,
/// 90-97 or 100-107. Bold and reverse are emphasis, not colour.
fn has_colour(screen: &str) -> bool {
    screen.split("\x1b[").skip(1).any(|sequence| {
        let params = sequence.split('m').next().unwrap_or("");
        params.split(';').any(|p| {
            matches!(
                p.parse::<u32>(),
                Ok(30..=38 | 40..=48 | 90..=97 | 100..=107)
            )
        })
    })
}

#[test]
fn no_color_turns_the_dashboards_colours_off_and_keeps_the_state_words() {
    let tmux = Tmux::start(&under_shell(
        "NO_COLOR=1 AMQP_URL=amqp://127.0.0.1:1",
        &["--demo"],
    ));
    tmux.wait_line(Duration::from_secs(20), "with search UP", |line| {
        line.starts_with("search ") && line.contains(" UP ")
    });
    let screen = tmux.capture(true);
    assert!(!has_colour(&screen), "{screen:?}");
    quit_and_check_the_terminal_is_restored(&tmux);
}

#[test]
fn mock_service_colours_only_a_terminal_and_never_under_no_color() {
    let mock_line = |env: &str, redirect: &str| {
        format!(
            "unset CLOUDAMQP_URL AMQP_URL RUST_LOG NO_COLOR; {env} {} --name {} --url amqp://127.0.0.1:1 {redirect}; echo EXITED:$?; sleep 600",
            shell_quote(&mock_bin().to_string_lossy()),
            short_name()
        )
    };
    // The pane is 80 columns wide: a retry line wraps, its level does not.
    let retrying = |line: &str| line.contains("WARN");
    // A terminal: coloured, as a person reading it expects...
    let tmux = Tmux::start(&mock_line("", ""));
    tmux.wait_line(Duration::from_secs(10), "retrying", retrying);
    assert!(has_colour(&tmux.capture(true)), "{:?}", tmux.capture(true));
    drop(tmux);
    // ...unless NO_COLOR says otherwise.
    let tmux = Tmux::start(&mock_line("NO_COLOR=1", ""));
    tmux.wait_line(Duration::from_secs(10), "retrying", retrying);
    assert!(!has_colour(&tmux.capture(true)), "{:?}", tmux.capture(true));
    drop(tmux);
    // A file (a log, journald) never gets escape codes.
    let log = std::env::temp_dir().join(unique("mock-stderr"));
    let tmux = Tmux::start(&mock_line(
        "",
        &format!("2>{}", shell_quote(&log.to_string_lossy())),
    ));
    let text = support::wait_for(Duration::from_secs(10), "a retry in the file", || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|t| t.contains("retrying"))
    });
    assert!(!text.contains('\x1b'), "{text:?}");
    drop(tmux);
    let _ = std::fs::remove_file(log);
}

/// In a monitor group the header says whether this monitor leads or
/// stands by, and who leads: a headless member leads first, the dashboard
/// stands by; once that member is killed, the dashboard leads.
#[test]
fn the_header_says_leader_or_standby_in_a_monitor_group() {
    let group = short_name();
    let leader_id = format!("l{}", &short_name()[6..]);
    let env = format!("MONITOR__GROUP__NAME={group}");
    let mut leader = {
        let mut command = Command::new(monitor_bin());
        command
            .env("MONITOR__GROUP__NAME", &group)
            .env("MONITOR__HISTORY__PATH", "")
            .args(["--headless", "--url", BROKER, "--id", &leader_id])
            .args(["--interval", &format!("{INTERVAL_MS}ms")]);
        Proc::spawn("leader", command)
    };
    leader.wait_stderr(Duration::from_secs(15), "this monitor leads the group");
    let tmux = Tmux::start(&under_shell(
        &env,
        &[
            "--url",
            BROKER,
            "--id",
            &format!("d{}", &short_name()[2..]),
            "--interval",
            &format!("{INTERVAL_MS}ms"),
        ],
    ));
    let line = tmux.wait_line(Duration::from_secs(20), "saying standby", |line| {
        line.contains(&format!("group {group}: standby (leader {leader_id})"))
    });
    tmux.wait_line(Duration::from_secs(10), "with both alive", |line| {
        line.contains("2 of 2 alive")
    });
    assert!(line.contains("● connected"), "{line}");
    leader.kill();
    tmux.wait_line(Duration::from_secs(10), "saying leader", |line| {
        line.contains(&format!("group {group}: leader"))
    });
    quit_and_check_the_terminal_is_restored(&tmux);
}

#[test]
fn the_marks_and_their_end_are_on_the_dashboard_and_its_help_names_them() {
    let name = short_name();
    let (silenced, patched, drained) = (format!("{name}s"), format!("{name}m"), format!("{name}d"));
    let dir = support::TempDir::new("dash-marks");
    // Built first: the window below opens now.
    mock_bin();
    // A maintenance window open from now for 40 s.
    let start = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let config = dir.0.join("monitor.toml");
    std::fs::write(
        &config,
        format!(
            "[[maintenance]]\nservices = [\"{patched}\"]\nstart = \"{start}\"\nduration = \"40s\"\nreason = \"kernel patch\"\n"
        ),
    )
    .unwrap();
    let token = "dash-marks-token-0123456789abcdef";
    let listen = format!("127.0.0.1:{}", support::free_port());
    let tmux = Tmux::start(&under_shell(
        &format!("HEARTBEAT_API_TOKEN={token}"),
        &[
            "--url",
            BROKER,
            "--id",
            &unique("dash"),
            "--interval",
            &format!("{INTERVAL_MS}ms"),
            "--timeout",
            &format!("{TIMEOUT_MS}ms"),
            "--config",
            &config.to_string_lossy(),
            "--listen",
            &listen,
        ],
    ));
    tmux.wait_line(Duration::from_secs(20), "saying connected", |line| {
        line.contains("● connected")
    });
    tmux.keys(&["/"]);
    tmux.text(&name);
    tmux.keys(&["Enter"]);
    let _s = mock(BROKER, &silenced, "i1", &[]);
    let _p = mock(BROKER, &patched, "i1", &[]);
    let d = mock(BROKER, &drained, "i1", &["--drain", "4s"]);
    let row = |service: &str, words: &'static str| {
        let service = service.to_owned();
        move |line: &str| line.starts_with(&format!("{service} ")) && line.contains(words)
    };
    tmux.wait_line(
        Duration::from_secs(20),
        "with the window's mark",
        row(&patched, " UP maintenance "),
    );
    tmux.wait_line(
        Duration::from_secs(20),
        "with the drained UP",
        row(&drained, " UP "),
    );
    let added = Command::new(monitor_bin())
        .args(["silence", "add", "--url", &format!("http://{listen}")])
        .args(["--service", &silenced, "--for", "8s", "--reason", "deploy"])
        .env("HEARTBEAT_API_TOKEN", token)
        .output()
        .unwrap();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    tmux.wait_line(
        Duration::from_secs(10),
        "with the silence's mark",
        row(&silenced, " UP silenced "),
    );
    d.signal("INT");
    tmux.wait_line(
        Duration::from_secs(10),
        "with the drain's mark",
        row(&drained, " LEFT draining "),
    );

    // The help names the marks (it scrolls at 80x24: page through it).
    tmux.keys(&["?"]);
    tmux.wait_line(Duration::from_secs(5), "with the help open", |line| {
        line.contains("┌ keys")
    });
    let mut unseen = vec![
        "said goodbye, promised to be back",
        "a silence holds its alerts",
        "a [[maintenance]] window holds its alerts",
    ];
    for _ in 0..12 {
        let screen = tmux.capture(false);
        unseen.retain(|words| !screen.contains(words));
        if unseen.is_empty() {
            break;
        }
        tmux.keys(&["Down", "Down", "Down", "Down"]);
        thread::sleep(Duration::from_millis(300));
    }
    assert!(unseen.is_empty(), "the help does not name {unseen:?}");
    // An Esc followed at once by another key reads as Alt+key: wait for it to act.
    tmux.keys(&["Escape"]);
    tmux.wait_line(Duration::from_secs(5), "with the help closed", |line| {
        line.starts_with("SERVICE")
    });
    // The detail view says until when, and why.
    tmux.keys(&["/", "s", "Enter"]);
    let others = |screen: &str| {
        screen
            .lines()
            .any(|l| l.starts_with(&format!("{patched} ")) || l.starts_with(&format!("{drained} ")))
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while others(&tmux.capture(false)) {
        assert!(
            Instant::now() < deadline,
            "the filter left others:\n{}",
            tmux.capture(false)
        );
        thread::sleep(Duration::from_millis(100));
    }
    tmux.keys(&["Enter"]);
    let detail = tmux.wait_line(Duration::from_secs(5), "with the silence's end", |line| {
        line.contains(&format!("{silenced}/i1")) && line.contains("silenced until ")
    });
    assert!(detail.contains("UTC: deploy"), "{detail}");
    tmux.keys(&["Escape"]);
    tmux.wait_line(Duration::from_secs(5), "with the list again", |line| {
        line.starts_with("SERVICE")
    });
    tmux.keys(&["/", "BSpace", "Enter"]);

    // Each mark goes when it ends; the drain not kept is DOWN, unmarked.
    tmux.wait_line(Duration::from_secs(15), "with the silence over", |line| {
        line.starts_with(&format!("{silenced} "))
            && line.contains(" UP ")
            && !line.contains("silenced")
    });
    tmux.wait_line(Duration::from_secs(15), "with the drain not kept", |line| {
        line.starts_with(&format!("{drained} "))
            && line.contains(" DOWN ")
            && !line.contains("draining")
    });
    tmux.wait_line(Duration::from_secs(45), "with the window closed", |line| {
        line.starts_with(&format!("{patched} "))
            && line.contains(" UP ")
            && !line.contains("maintenance")
    });
    quit_and_check_the_terminal_is_restored(&tmux);
}
