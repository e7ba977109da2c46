//! What a user installs, each the way the README's "Install" gives it:
//! `cargo install --locked --path monitor` (and `mock-service`) into a root
//! of its own, whose release binaries `scripts/package.sh` then packages:
//! the Debian package installed into a throwaway root, its units verified
//! by systemd's own tool, the release archive unpacked and checked against
//! its SHA-256 file, and the container image built and run under podman
//! (skipped, saying so, where podman is not installed).
//!
//! One test, because every step needs the install before it. The install
//! is a release build in the workspace's `target/release` (cargo install
//! builds there for `--path`): minutes the first time, seconds after.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::*;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Run a command to its end; fail the test with what it said if it failed.
fn ok(command: &mut Command) -> Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?}: {}\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|out| out.status.success())
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn version_line(bin: &str) -> String {
    format!("{bin} {} (commit ", env!("CARGO_PKG_VERSION"))
}

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn package_archive_and_image_install_and_run() {
    let scratch = Scratch(std::env::temp_dir().join(unique("package")));
    let out = scratch.0.join("dist");
    let version = env!("CARGO_PKG_VERSION");
    let tag = format!("localhost/{}:test", unique("heartbeat").to_lowercase());
    let podman = have("podman");

    // `cargo install`, as the README says it, with a root of our own.
    let installed = scratch.0.join("cargo-root");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    for package in ["monitor", "mock-service"] {
        let started = Instant::now();
        ok(Command::new(&cargo)
            .args(["install", "--locked", "--path", package, "--root"])
            .arg(&installed)
            .current_dir(workspace()));
        eprintln!(
            "cargo install --path {package} took {:.1}s",
            started.elapsed().as_secs_f64()
        );
        let said = ok(Command::new(installed.join("bin").join(package)).arg("--version"));
        assert!(
            text(&said.stdout).starts_with(&version_line(package)),
            "{}",
            text(&said.stdout)
        );
    }
    let bin_dir = installed.join("bin");

    let started = Instant::now();
    let mut package = Command::new(workspace().join("scripts/package.sh"));
    package
        .args(["--bin-dir", bin_dir.to_str().unwrap()])
        .args([
            "--out",
            out.to_str().unwrap(),
            "--image-tag",
            &tag,
            "--fast",
        ])
        .current_dir(workspace());
    let built = ok(&mut package);
    eprintln!(
        "package.sh took {:.1}s{}",
        started.elapsed().as_secs_f64(),
        if podman { " (with the image)" } else { "" }
    );
    let _image = podman.then(|| RemoveImage(tag.clone()));

    // The Debian package, into a root of its own.
    let deb = out.join(format!("heartbeat-monitor_{version}_amd64.deb"));
    let root = scratch.0.join("root");
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    let dpkg = |args: &[&str]| {
        let mut command = Command::new("dpkg");
        command
            .arg(format!("--root={}", root.display()))
            .args([
                "--log=/dev/null",
                "--force-script-chrootless",
                "--force-not-root",
            ])
            .args(args);
        command
    };
    // libc6 is the throwaway root's only missing dependency: the host's is used.
    ok(&mut dpkg(&["--force-depends", "-i", deb.to_str().unwrap()]));
    for bin in ["monitor", "mock-service"] {
        let installed = root.join("usr/bin").join(bin);
        let said = ok(Command::new(&installed).arg("--version"));
        assert!(
            text(&said.stdout).starts_with(&version_line(bin)),
            "{}",
            text(&said.stdout)
        );
        for file in [
            format!("usr/share/man/man1/{bin}.1.gz"),
            format!("usr/share/bash-completion/completions/{bin}"),
            format!("usr/share/zsh/vendor-completions/_{bin}"),
            format!("usr/share/fish/vendor_completions.d/{bin}.fish"),
        ] {
            assert!(root.join(&file).is_file(), "{file} not installed");
        }
    }
    let example = root.join("etc/heartbeat/monitor.toml");
    let checked = ok(Command::new(root.join("usr/bin/monitor"))
        .args(["check-config", "--config", example.to_str().unwrap()])
        .env_remove("CLOUDAMQP_URL")
        .env_remove("AMQP_URL"));
    assert!(text(&checked.stdout).ends_with(": ok\n"));
    {
        use std::os::unix::fs::MetadataExt;
        for secret in [
            "etc/heartbeat/monitor.env",
            "etc/heartbeat/mock-service.env",
        ] {
            let meta = std::fs::metadata(root.join(secret)).unwrap();
            assert_eq!(meta.mode() & 0o777, 0o600, "{secret}");
        }
    }
    let conffiles = ok(&mut dpkg(&["--status", "heartbeat-monitor"]));
    assert!(text(&conffiles.stdout).contains("/etc/heartbeat/monitor.env"));

    // The units, as systemd itself reads them.
    let units = root.join("lib/systemd/system");
    if have("systemd-analyze") {
        // The units they name (sysinit.target, ...) are the host's: copied
        // in beside ours, so the throwaway root reads like a system.
        ok(Command::new("cp").args(["-rn", "/lib/systemd/system/.", units.to_str().unwrap()]));
        // So is the program ExecReload runs (/bin/kill, procps): verify
        // looks for it in the root.
        std::fs::create_dir_all(root.join("bin")).unwrap();
        ok(Command::new("cp").args(["-L", "/bin/kill", root.join("bin/kill").to_str().unwrap()]));
        let verified = Command::new("systemd-analyze")
            .arg(format!("--root={}", root.display()))
            .args([
                "verify",
                "heartbeat-monitor.service",
                "mock-service@orders.service",
            ])
            .env("SYSTEMD_LOG_LEVEL", "notice")
            // Documentation=man:...: the pages installed in the root.
            .env("MANPATH", root.join("usr/share/man"))
            .output()
            .unwrap();
        let said = format!("{}{}", text(&verified.stdout), text(&verified.stderr));
        assert!(
            verified.status.success() && said.trim().is_empty(),
            "{said}"
        );
    } else {
        eprintln!(
            "skipped systemd-analyze verify: systemd's tools are not installed (scripts/test.sh installs them)"
        );
    }
    let unit = std::fs::read_to_string(units.join("heartbeat-monitor.service")).unwrap();
    for line in [
        "Type=notify",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "StateDirectory=heartbeat",
        "EnvironmentFile=-/etc/heartbeat/monitor.env",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line}");
    }
    ok(&mut dpkg(&["--purge", "heartbeat-monitor"]));
    assert!(
        !root.join("usr/bin/monitor").exists(),
        "purged, yet still there"
    );
    assert!(
        !root.join("etc/heartbeat/monitor.env").exists(),
        "purge keeps secrets"
    );

    // The release archive: its checksum, then what it holds.
    let name = format!("heartbeat-{version}-x86_64-linux");
    ok(Command::new("sha256sum")
        .args(["--check", "--strict", &format!("{name}.tar.gz.sha256")])
        .current_dir(&out));
    let unpacked = scratch.0.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    ok(Command::new("tar")
        .args(["-xzf", out.join(format!("{name}.tar.gz")).to_str().unwrap()])
        .current_dir(&unpacked));
    let tree = unpacked.join(&name);
    for file in [
        "README.md",
        "monitor.toml",
        "man/monitor.1",
        "heartbeat-monitor.service",
    ] {
        assert!(tree.join(file).is_file(), "the archive lacks {file}");
    }
    for bin in ["monitor", "mock-service"] {
        let said = ok(Command::new(tree.join(bin)).arg("--version"));
        assert!(text(&said.stdout).starts_with(&version_line(bin)));
    }

    // The image.
    if !podman {
        eprintln!(
            "skipped the container image: podman is not installed (scripts/test.sh installs it)"
        );
        assert!(text(&built.stdout).contains("image not built: podman is not installed"));
        return;
    }
    let user = ok(Command::new("podman").args([
        "image",
        "inspect",
        "--format",
        "{{.Config.User}} {{.Config.Healthcheck.Test}}",
        &tag,
    ]));
    let user = text(&user.stdout);
    assert!(user.starts_with("65532:65532 "), "{user}");
    assert!(user.contains("status --healthz"), "no HEALTHCHECK: {user}");
    let said = ok(Podman::run(&scratch.0).args([&tag, "--version"]));
    assert!(
        text(&said.stdout).starts_with(&version_line("monitor")),
        "{}",
        text(&said.stdout)
    );

    // In the container, the monitor reaches the local broker and sees a service.
    let service = unique("contained");
    let _svc = mock(BROKER, &service, "a", &[]);
    let container = unique("heartbeat-test");
    let _gone = RemoveContainer(container.clone());
    let mut run = Podman::run(&scratch.0);
    run.args(["--name", &container, "--network", "host", &tag])
        .args([
            "--headless",
            "--url",
            BROKER,
            "--interval",
            "200ms",
            "--timeout",
            "1s",
        ]);
    let mut monitor = Proc::spawn("monitor in a container", run);
    monitor.wait_json(Duration::from_secs(30), "the service UP", |v| {
        v["service"] == service.as_str() && v["to"] == "up"
    });
}

/// `podman run`, with what this kind of machine needs (see
/// /work/shared/notes/containers.md; a normal set-up needs none of it).
struct Podman;

impl Podman {
    fn run(scratch: &Path) -> Command {
        let conf = scratch.join("containers.conf");
        std::fs::write(&conf, "[containers]\ndefault_ulimits = []\n").unwrap();
        let mut command = Command::new("podman");
        command.env("CONTAINERS_CONF", conf).args([
            "--runtime",
            "runc",
            "--cgroup-manager=cgroupfs",
            "run",
            "--rm",
        ]);
        command
    }
}

struct RemoveImage(String);

impl Drop for RemoveImage {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rmi", "--force", &self.0])
            .output();
    }
}

struct RemoveContainer(String);

impl Drop for RemoveContainer {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["--runtime", "runc", "rm", "--force", "--time", "2", &self.0])
            .output();
    }
}

/// The README's commands run on a fresh checkout: a binary under
/// `./target/<profile>/` only after a step that builds that profile, and
/// the line that runs `scripts/test.sh` says it installs packages as root.
#[test]
fn the_readme_runs_only_what_its_steps_build() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let mut built_debug = false;
    let mut built_release = false;
    for (number, line) in readme.lines().enumerate() {
        let command = line.trim_start();
        if command.starts_with("cargo build") {
            if command.contains("--release") {
                built_release = true;
            } else {
                built_debug = true;
            }
        }
        let number = number + 1;
        assert!(
            !line.contains("./target/release/") || built_release,
            "README.md:{number} runs a release binary no step before it builds: {line}"
        );
        assert!(
            !line.contains("./target/debug/") || built_debug,
            "README.md:{number} runs a debug binary no step before it builds: {line}"
        );
    }
    let runs_tests = readme
        .lines()
        .find(|line| line.trim_start().starts_with("scripts/test.sh"))
        .expect("the README runs scripts/test.sh");
    assert!(
        runs_tests.contains("root") && runs_tests.contains("sudo"),
        "the README's scripts/test.sh line does not say it installs as root: {runs_tests}"
    );
}
