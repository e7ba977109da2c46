//! A history store that fails costs history, never heartbeats: a full disk
//! (a small tmpfs the test mounts), an unwritable journal and a truncated
//! `-shm`, the database file deleted or corrupted under the running
//! monitor, a PostgreSQL that drops the connection or accepts TCP and never
//! answers. Detection goes on, the failure is shown (`/metrics`, `/healthz`,
//! one log line), records wait and are written once the store works again.

mod support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use heartbeat_config::HistorySettings;
use monitor::history::{self, Who};
use support::*;

const UP_WITHIN: Duration = Duration::from_secs(10);
/// From a kill to DOWN, with room for a loaded machine.
const DOWN_WITHIN: Duration = Duration::from_millis(TIMEOUT_MS + INTERVAL_MS + 1500);
/// A failing store is retried with backoff (at most 10 s apart).
const RECOVERS_WITHIN: Duration = Duration::from_secs(25);

/// A directory of its own, removed at the end (unmounted first if mounted).
struct TempDir(PathBuf, bool);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(unique("store-faults"));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir, false)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.1 {
            let _ = Command::new("umount").arg(&self.0).status();
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A tmpfs of `size` at a directory of its own; unmounted when dropped.
fn small_filesystem(size: &str) -> TempDir {
    let mut dir = TempDir::new();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(&dir.0)
        .status()
        .expect("mount(8) runs");
    assert!(
        status.success(),
        "cannot mount a tmpfs at {} (these tests run as root, as scripts/test.sh does)",
        dir.0.display()
    );
    dir.1 = true;
    dir
}

fn settings(path: &Path) -> HistorySettings {
    HistorySettings {
        path: path.to_string_lossy().into_owned(),
        url: String::new(),
        retention: Duration::from_secs(30 * 24 * 3600),
        timeout: Duration::from_secs(5),
    }
}

/// The stored transitions of `service` (oldest first), read as any reader would.
fn stored(path: &Path, service: &str) -> Vec<(String, String)> {
    let mut store = history::open(&settings(path)).expect("the store opens");
    let mut rows: Vec<(String, String)> = store
        .transitions(FLEET, Who::Service(service), 0, 100)
        .unwrap()
        .into_iter()
        .map(|t| (t.to, t.reason))
        .collect();
    rows.reverse();
    rows
}

fn store_up(base: &str) -> Option<f64> {
    metric(base, "heartbeat_history_store_up")
}

/// Wait until the store is reported down, everywhere it is shown.
/// `waiting`: records were produced since the failure, and wait.
fn wait_store_down(monitor: &Proc, base: &str, why: &str, waiting: bool) {
    wait_for(
        Duration::from_secs(10),
        &format!("store_up 0 ({why})"),
        || (store_up(base) == Some(0.0)).then_some(()),
    );
    let (status, body) = http_get(&format!("{base}/healthz")).expect("/healthz answers");
    assert_eq!(
        status, 200,
        "a failing store is no reason to restart the watcher: {body}"
    );
    assert!(body.starts_with("ok; history store failing: "), "{body}");
    if waiting {
        assert!(
            metric(base, "heartbeat_history_records_waiting").is_some_and(|n| n >= 1.0),
            "records wait"
        );
    }
    // Under its own target, not monitor::notify.
    monitor.wait_stderr(Duration::from_secs(2), " monitor::history: history: ");
}

fn wait_store_up(base: &str, why: &str) {
    wait_for(RECOVERS_WITHIN, &format!("store_up 1 ({why})"), || {
        (store_up(base) == Some(1.0)
            && metric(base, "heartbeat_history_records_waiting") == Some(0.0))
        .then_some(())
    });
}

/// Write until the filesystem is full; the file is the space to give back.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 64 * 1024];
    loop {
        match file.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    let _ = file.flush();
}

fn kill_and_see_down(monitor: &mut Proc, service: &mut Proc, name: &str) {
    service.kill();
    let killed = Instant::now();
    monitor.wait_json(
        DOWN_WITHIN,
        "DOWN on time",
        transition(name, "down", "timed_out"),
    );
    assert!(killed.elapsed() <= DOWN_WITHIN);
}

#[test]
fn a_full_disk_an_unwritable_journal_and_a_truncated_shm_cost_history_never_heartbeats() {
    let fs = small_filesystem("1m");
    let path = fs.0.join("heartbeat.db");
    let (mut monitor, base) = http_monitor(
        BROKER,
        &[("MONITOR__HISTORY__PATH", &path.to_string_lossy())],
    );
    let a = unique("fault-a");
    let mut service_a = mock(BROKER, &a, "a-1", &[]);
    monitor.wait_json(UP_WITHIN, "first seen", transition(&a, "up", "first_seen"));
    wait_for(Duration::from_secs(10), "first write", || {
        metric(&base, "heartbeat_history_records_written_total")
            .filter(|n| *n >= 1.0)
            .map(|_| ())
    });
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600,
        "the database is its user's alone"
    );

    // The journal cannot be created (root ignores modes: a directory takes
    // its name), and a shared-memory file, were there one, is cut to
    // nothing: mapped, that was a SIGBUS at the next write.
    let shm = fs.0.join("heartbeat.db-shm");
    if shm.exists() {
        std::fs::File::create(&shm).unwrap();
    }
    let journal = fs.0.join("heartbeat.db-journal");
    let wal = fs.0.join("heartbeat.db-wal");
    if wal.exists() {
        std::fs::File::create(&wal).unwrap();
    }
    std::fs::create_dir(&journal).unwrap();
    kill_and_see_down(&mut monitor, &mut service_a, &a);
    wait_store_down(&monitor, &base, "journal unwritable", true);
    std::fs::remove_dir(&journal).unwrap();
    wait_store_up(&base, "journal writable again");
    assert_eq!(
        stored(&path, &a).last().map(|(to, _)| to.as_str()),
        Some("down"),
        "the DOWN that waited is written"
    );

    // A full disk.
    let filler = fs.0.join("filler");
    fill(&filler);
    let b = unique("fault-b");
    let mut service_b = mock(BROKER, &b, "b-1", &[]);
    monitor.wait_json(
        UP_WITHIN,
        "first seen while full",
        transition(&b, "up", "first_seen"),
    );
    kill_and_see_down(&mut monitor, &mut service_b, &b);
    wait_store_down(&monitor, &base, "disk full", true);
    std::fs::remove_file(&filler).unwrap();
    wait_store_up(&base, "space again");
    assert_eq!(
        stored(&path, &b)
            .iter()
            .map(|(to, _)| to.as_str())
            .collect::<Vec<_>>(),
        ["up", "suspect", "down"],
        "what waited while the disk was full"
    );
    assert!(monitor.stderr().contains("the store takes writes again"));
    monitor.stop_cleanly("TERM", Duration::from_secs(8));
}

#[test]
fn the_database_deleted_or_corrupted_under_a_running_monitor_is_seen_and_recovered() {
    let dir = TempDir::new();
    let path = dir.0.join("heartbeat.db");
    let (mut monitor, base) = http_monitor(
        BROKER,
        &[("MONITOR__HISTORY__PATH", &path.to_string_lossy())],
    );
    let a = unique("gone-a");
    let mut service_a = mock(BROKER, &a, "a-1", &[]);
    monitor.wait_json(UP_WITHIN, "first seen", transition(&a, "up", "first_seen"));
    wait_store_up(&base, "first write");

    // Deleted: noticed without a write, and a new file takes the next ones.
    std::fs::remove_file(&path).unwrap();
    wait_store_down(&monitor, &base, "file deleted", false);
    monitor.wait_stderr(Duration::from_secs(1), "was deleted while in use");
    kill_and_see_down(&mut monitor, &mut service_a, &a);
    wait_store_up(&base, "a new file");
    assert_eq!(
        stored(&path, &a)
            .iter()
            .map(|(to, _)| to.as_str())
            .collect::<Vec<_>>(),
        ["suspect", "down"],
        "written to the new file, not the deleted one"
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Corrupted in place: the writes fail, and wait.
    let size = std::fs::metadata(&path).unwrap().len() as usize;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .write_all(&vec![0xA5; size.max(4096)])
        .unwrap();
    let b = unique("gone-b");
    let _service_b = mock(BROKER, &b, "b-1", &[]);
    monitor.wait_json(UP_WITHIN, "first seen", transition(&b, "up", "first_seen"));
    wait_store_down(&monitor, &base, "file corrupted", true);
    // The operator moves the broken file away; what waited is written.
    std::fs::rename(&path, dir.0.join("heartbeat.db.broken")).unwrap();
    wait_store_up(&base, "the broken file moved away");
    assert_eq!(
        stored(&path, &b)
            .iter()
            .map(|(to, _)| to.as_str())
            .collect::<Vec<_>>(),
        ["up"]
    );
    monitor.stop_cleanly("TERM", Duration::from_secs(8));
}

/// Accepts TCP connections and never answers on them.
struct BlackHole {
    port: u16,
}

impl BlackHole {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            // Bounded: a test makes a handful of connections.
            for stream in listener.incoming().take(200) {
                match stream {
                    Ok(stream) => held.push(stream),
                    Err(_) => break,
                }
            }
        });
        Self { port }
    }
}

#[test]
fn a_postgresql_that_never_answers_is_reported_within_its_timeout_and_never_holds_the_stop() {
    let hole = BlackHole::start();
    let url = format!("postgres://u:secret@127.0.0.1:{}/x", hole.port);
    let (mut monitor, base) = http_monitor(
        BROKER,
        &[
            ("MONITOR__HISTORY__URL", &url),
            ("MONITOR__HISTORY__TIMEOUT", "1s"),
        ],
    );
    let name = unique("hole");
    let mut service = mock(BROKER, &name, "h-1", &[]);
    monitor.wait_json(
        UP_WITHIN,
        "first seen",
        transition(&name, "up", "first_seen"),
    );
    // The first write starts at once and hangs: down within the timeout (1 s) and a poll.
    let seen_up = Instant::now();
    wait_for(Duration::from_secs(4), "store_up 0", || {
        (store_up(&base) == Some(0.0)).then_some(())
    });
    assert!(seen_up.elapsed() < Duration::from_secs(4));
    monitor.wait_stderr(Duration::from_secs(2), "no answer within 1s");

    // Reads answer 503 in bounded time.
    let asked = Instant::now();
    let (status, body) = http_get(&format!("{base}/api/v1/history?service={name}"))
        .expect("the history API answers");
    assert_eq!(status, 503, "{body}");
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );

    // Detection goes on.
    kill_and_see_down(&mut monitor, &mut service, &name);

    // A stop is a few seconds, whatever the store does, and says what was lost.
    let asked = Instant::now();
    monitor.stop_cleanly("TERM", Duration::from_secs(6));
    assert!(asked.elapsed() < Duration::from_secs(6));
    let stderr = monitor.stderr();
    assert!(
        stderr.contains("records not written before stopping"),
        "{stderr}"
    );
    assert!(!stderr.contains("secret"), "{stderr}");
}

#[test]
fn a_postgresql_connection_dropped_mid_run_is_reconnected_and_nothing_is_lost() {
    let db = Database::create();
    let url = db.url();
    let (mut monitor, base) = http_monitor(BROKER, &[("MONITOR__HISTORY__URL", &url)]);
    let name = unique("dropped");
    let mut service = mock(BROKER, &name, "d-1", &[]);
    monitor.wait_json(
        UP_WITHIN,
        "first seen",
        transition(&name, "up", "first_seen"),
    );
    wait_store_up(&base, "first write");
    // The server ends the monitor's session, as a restart or an admin would.
    let dbname = url.rsplit('/').next().unwrap().to_owned();
    let mut admin =
        postgres::Client::connect(&format!("{POSTGRES}/test"), postgres::NoTls).unwrap();
    let ended = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            &[&dbname],
        )
        .unwrap();
    assert!(!ended.is_empty(), "the monitor had a session");
    kill_and_see_down(&mut monitor, &mut service, &name);
    wait_for(
        RECOVERS_WITHIN,
        "the transitions after the drop stored",
        || {
            let mut store = history::open(&HistorySettings {
                url: url.clone(),
                ..settings(Path::new(""))
            })
            .ok()?;
            let kept = store.transitions(FLEET, Who::Service(&name), 0, 10).ok()?;
            (kept.len() == 3).then_some(())
        },
    );
    assert!(
        metric(&base, "heartbeat_history_write_failures_total").is_some_and(|n| n >= 1.0),
        "the dropped connection was seen"
    );
    wait_store_up(&base, "reconnected");
    let stderr = monitor.stderr();
    assert!(
        !stderr.contains("skipping"),
        "no NOTICE in the log: {stderr}"
    );
    monitor.stop_cleanly("TERM", Duration::from_secs(8));
}
