//! Reconnection against a broker that dies: this test starts its own
//! RabbitMQ node, on its own ports and data directory, and kills it. The
//! shared broker on 5672 is never touched.

mod support;

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/// A private RabbitMQ node. Killed, with its data, when dropped.
struct Node {
    dir: PathBuf,
    name: String,
    port: u16,
    dist_port: u16,
    server: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Node {
    fn start() -> Self {
        assert!(
            std::path::Path::new(SERVER).exists(),
            "{SERVER} is missing: install Debian's rabbitmq-server (.ci/run does)"
        );
        let name = unique("hbtest");
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut node = Self {
            dir,
            name,
            port: free_port(),
            dist_port: free_port(),
            server: None,
        };
        // Our own listener: the system config would bind the shared 5672.
        std::fs::write(
            node.dir.join("rabbitmq.conf"),
            format!("listeners.tcp.local = 127.0.0.1:{}\n", node.port),
        )
        .unwrap();
        std::fs::write(node.dir.join("enabled_plugins"), "[].\n").unwrap();
        std::fs::write(node.dir.join("rabbitmq-env.conf"), "").unwrap();
        node.spawn();
        node
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn spawn(&mut self) {
        let d = |sub: &str| self.dir.join(sub);
        let log = std::fs::File::create(d("server.log")).unwrap();
        let mut command = Command::new(SERVER);
        command
            .current_dir(&self.dir)
            .env("HOME", &self.dir)
            .env("RABBITMQ_NODENAME", format!("{}@localhost", self.name))
            .env("RABBITMQ_CONFIG_FILE", d("rabbitmq.conf"))
            .env("RABBITMQ_CONF_ENV_FILE", d("rabbitmq-env.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d("enabled_plugins"))
            .env("RABBITMQ_MNESIA_BASE", d("mnesia"))
            .env("RABBITMQ_LOG_BASE", d("log"))
            .env("RABBITMQ_PID_FILE", d("pid"))
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            // Its own process group, so killing the group takes beam and its helpers.
            .process_group(0);
        self.server = Some(command.spawn().expect("rabbitmq-server starts"));
        self.wait_ready(Duration::from_secs(60));
    }

    /// The listener opens once the broker accepts logins.
    fn wait_ready(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "private broker not up within {within:?}:\n{}",
                std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL the whole node, as a crash would.
    fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", server.id())])
                .status();
            let _ = server.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(
                Instant::now() < deadline,
                "private broker still listening after kill"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn with_fast_reconnect(mut command: Command) -> Command {
    command.env("MONITOR__BROKER__RECONNECT_MAX", "500ms");
    command
}

#[test]
fn services_stay_up_through_a_broker_crash_and_detection_resumes_after() {
    let mut node = Node::start();
    let url = node.url();
    let name = unique("survivor");

    let mut command = Command::new(monitor_bin());
    command
        .args(["--headless", "--url", &url, "--id", &unique("mon")])
        .args(["--interval", "200ms", "--timeout", "2s"]);
    let mut monitor = Proc::spawn("monitor", with_fast_reconnect(command));
    let mut command = Command::new(mock_bin());
    command.args(["--url", &url, "--name", &name, "--instance", "s-1"]);
    let mut mock = Proc::spawn("mock", with_fast_reconnect(command));

    monitor.wait_json(
        Duration::from_secs(15),
        "first seen",
        transition(&name, "up", "first_seen"),
    );

    node.kill();
    monitor.wait_stderr(Duration::from_secs(10), "unreachable");
    mock.wait_stderr(Duration::from_secs(10), "unreachable");
    node.spawn();
    let reconnected = |p: &Proc| p.stderr().matches(" connected").count() >= 2;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(reconnected(&monitor) && reconnected(&mock)) {
        assert!(
            Instant::now() < deadline,
            "no reconnect.\nmonitor:\n{}\nmock:\n{}",
            monitor.stderr(),
            mock.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // No false alarm: the outage was the broker's, and the service answered
    // again once back. Watch for longer than grace + timeout to be sure.
    monitor.expect_no_json(Duration::from_millis(3500), "any transition", |v| {
        v["service"] == name.as_str()
    });

    // Detection works on the new connection: a crash is seen again.
    mock.kill();
    monitor.wait_json(
        Duration::from_secs(5),
        "timed out",
        transition(&name, "down", "timed_out"),
    );
}
