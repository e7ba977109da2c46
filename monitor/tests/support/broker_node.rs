//! A private RabbitMQ node for tests that stop, kill, restart or
//! reconfigure a broker: its own node name, ports and data directory, so
//! the shared broker on 5672 is never touched. The one recipe for it; every
//! test that needs such a node uses this.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, unique};

const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const CTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";

/// A private RabbitMQ node. Killed, with its data, when dropped.
pub struct PrivateBroker {
    pub dir: PathBuf,
    pub name: String,
    pub port: u16,
    /// Set for a node started with [`PrivateBroker::start_tls`].
    pub tls_port: Option<u16>,
    /// Set for a node started with [`PrivateBroker::start_with_management`].
    pub management_port: Option<u16>,
    dist_port: u16,
    server: Option<Child>,
}

/// A CA, and a server certificate for `localhost` signed by it, made with
/// the openssl tool into `dir`.
pub fn make_certificates(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl runs (apt-get install openssl)");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=heartbeat test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName = DNS:localhost\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
}

impl PrivateBroker {
    pub fn start() -> Self {
        Self::start_with(false, false)
    }

    /// A node with the management plugin on [`PrivateBroker::management_url`],
    /// its figures refreshed every 500 ms: what the broker itself counted.
    pub fn start_with_management() -> Self {
        Self::start_with(false, true)
    }

    /// `http://127.0.0.1:PORT` of the management API, when it has one.
    pub fn management_url(&self) -> Option<String> {
        self.management_port
            .map(|port| format!("http://127.0.0.1:{port}"))
    }

    /// A node that also listens with TLS on [`PrivateBroker::tls_port`], with a
    /// certificate for `localhost` (only) signed by a CA made for it,
    /// [`PrivateBroker::ca_file`].
    pub fn start_tls() -> Self {
        Self::start_with(true, false)
    }

    fn start_with(tls: bool, management: bool) -> Self {
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
            tls_port: tls.then(free_port),
            management_port: management.then(free_port),
            dist_port: free_port(),
            server: None,
        };
        // Our own listener: the system config would bind the shared 5672.
        let mut config = format!("listeners.tcp.local = 127.0.0.1:{}\n", node.port);
        if let Some(tls_port) = node.tls_port {
            let tls = node.dir.join("tls");
            make_certificates(&tls);
            config.push_str(&format!(
                "listeners.ssl.default = 127.0.0.1:{tls_port}\n\
                 ssl_options.cacertfile = {}\n\
                 ssl_options.certfile = {}\n\
                 ssl_options.keyfile = {}\n\
                 ssl_options.verify = verify_none\n\
                 ssl_options.fail_if_no_peer_cert = false\n",
                tls.join("ca.pem").display(),
                tls.join("server.pem").display(),
                tls.join("server.key").display(),
            ));
        }
        let plugins = match node.management_port {
            Some(port) => {
                config.push_str(&format!(
                    "management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {port}\ncollect_statistics_interval = 500\n"
                ));
                "[rabbitmq_management].\n"
            }
            None => "[].\n",
        };
        std::fs::write(node.dir.join("rabbitmq.conf"), config).unwrap();
        std::fs::write(node.dir.join("enabled_plugins"), plugins).unwrap();
        std::fs::write(node.dir.join("rabbitmq-env.conf"), "").unwrap();
        node.spawn();
        node
    }

    /// The CA that signed a TLS node's certificate (PEM).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("tls/ca.pem")
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    pub fn spawn(&mut self) {
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
        if let Some(port) = self.management_port {
            let deadline = Instant::now() + Duration::from_secs(60);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "no management listener");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// The listener opens once the broker accepts logins.
    pub fn wait_ready(&self, within: Duration) {
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
    pub fn kill(&mut self) {
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

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl PrivateBroker {
    /// Run `rabbitmqctl` against this node, e.g. `["close_all_connections", "test"]`.
    /// Panics with the tool's output when it fails, since the test cannot go on.
    pub fn ctl(&self, args: &[&str]) -> Output {
        let output = self.try_ctl(args);
        assert!(
            output.status.success(),
            "rabbitmqctl {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// `ctl`, its failure returned.
    fn try_ctl(&self, args: &[&str]) -> Output {
        // The server's own copy, not the /usr/sbin wrapper, which switches to the
        // rabbitmq user and so to that user's Erlang cookie, not this node's.
        // The tool's own Erlang node listens on a port of its range, by
        // default 35672-35682: inside the kernel's ephemeral range, where a
        // test's flood of outgoing connections can take all eleven. Below it,
        // nothing but a listener takes a port.
        Command::new(CTL)
            .env("HOME", &self.dir)
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_CTL_DIST_PORT_MIN", "24100")
            .env("RABBITMQ_CTL_DIST_PORT_MAX", "24199")
            .args(["-n", &format!("{}@localhost", self.name)])
            .args(args)
            .output()
            .expect("rabbitmqctl runs")
    }

    /// Close every client connection from the broker's side, as an operator
    /// or a network cut would.
    pub fn close_all_connections(&self) {
        self.ctl(&["close_all_connections", "closed by the test"]);
    }

    /// Close, from the broker's side, the connections whose client
    /// properties mention `fragment` (a connection name, say). How many.
    pub fn close_connections_of(&self, fragment: &str) -> usize {
        let listed = self.ctl(&["-q", "list_connections", "pid", "client_properties"]);
        let pids: Vec<String> = String::from_utf8_lossy(&listed.stdout)
            .lines()
            .filter(|line| line.contains(fragment))
            .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
            .collect();
        for pid in &pids {
            self.ctl(&["close_connection", pid, "closed by the test"]);
        }
        pids.len()
    }
}

impl PrivateBroker {
    /// Set the memory alarm's threshold, as a fraction of the machine's
    /// memory: a tiny one raises the alarm, and the broker blocks publishers.
    pub fn set_memory_watermark(&self, fraction: f64) {
        self.ctl(&["set_vm_memory_high_watermark", &fraction.to_string()]);
    }
}
