//! Real programs the tests drive beside the monitor: a headless Chromium
//! that loads the status page, and the checks that a program is installed.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::unique;

/// A fresh directory for one run of a tool.
pub fn tool_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(name));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Fail with how to install `program` when it is missing.
pub fn require(program: &str, package: &str) {
    assert!(
        Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success()),
        "{program} is missing: install Debian's {package} package (scripts/test.sh does)"
    );
}

/// What headless Chromium shows at `url`, once its scripts have run.
pub fn browser_dom(url: &str) -> String {
    require("chromium", "chromium");
    let dir = tool_dir("chromium");
    let mut command = Command::new("chromium");
    command.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--virtual-time-budget=5000",
        "--window-size=400,800",
        &format!("--user-data-dir={}", dir.join("profile").display()),
        "--dump-dom",
        url,
    ]);
    let dom_file = dir.join("dom.html");
    let out = std::fs::File::create(&dom_file).unwrap();
    command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::null())
        .process_group(0);
    let mut child = command.spawn().expect("chromium starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&dir);
            panic!("chromium did not finish loading {url} within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let dom = std::fs::read_to_string(&dom_file).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    dom
}

/// The `<tr>` the page shows for `service`, if any.
pub fn page_row(dom: &str, service: &str) -> Option<String> {
    let marker = format!("data-service=\"{service}\"");
    let at = dom.find(&marker)?;
    let start = dom[..at].rfind("<tr")?;
    let end = at + dom[at..].find("</tr>")?;
    Some(dom[start..end].to_owned())
}
