//! A real SMTP server for tests: aiosmtpd (from PyPI; scripts/test.sh
//! installs it) on a free loopback port, STARTTLS required with a
//! certificate for `localhost` signed by a CA made for it, and a login
//! required after STARTTLS. Each mail it takes is one JSON line: the
//! envelope, the parsed headers and body, whether the session was under
//! TLS and logged in.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::{Proc, TempDir, free_port, make_certificates};

const SERVER: &str = r#"
import json, ssl, sys, threading
from email import message_from_bytes, policy
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

cert, key, login, password, port = sys.argv[1:6]

class Handler:
    async def handle_DATA(self, server, session, envelope):
        mail = message_from_bytes(envelope.content, policy=policy.default)
        print(json.dumps({
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from": str(mail["from"]),
            "to": str(mail["to"]),
            "subject": str(mail["subject"]),
            "content_type": mail.get_content_type(),
            "body": mail.get_content(),
            "tls": session.ssl is not None,
            "authenticated": bool(session.authenticated),
        }), flush=True)
        return "250 OK"

def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword)
          and auth_data.login == login.encode()
          and auth_data.password == password.encode())
    if not ok:
        print(json.dumps({"refused": mechanism}), flush=True)
    return AuthResult(success=ok)

context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)
controller = Controller(Handler(), hostname="localhost", port=int(port),
                        tls_context=context, require_starttls=True,
                        authenticator=authenticator, auth_required=True,
                        auth_require_tls=True)
controller.start()
print(json.dumps({"ready": int(port)}), flush=True)
threading.Event().wait()
"#;

pub struct Smtp {
    pub port: u16,
    /// The CA that signed the server's certificate: the `ca_file` to trust.
    pub ca_file: PathBuf,
    process: Proc,
    _dir: TempDir,
}

impl Smtp {
    /// Start it with the one `login` and `password` it accepts, and wait
    /// until it answers.
    pub fn start(login: &str, password: &str) -> Self {
        let dir = TempDir::new("smtp");
        make_certificates(&dir.0);
        let port = free_port();
        let mut command = Command::new("python3");
        command
            .arg("-c")
            .arg(SERVER)
            .arg(dir.0.join("server.pem"))
            .arg(dir.0.join("server.key"))
            .args([login, password, &port.to_string()]);
        let mut process = Proc::spawn("aiosmtpd", command);
        process.wait_json(
            Duration::from_secs(20),
            "aiosmtpd ready (scripts/test.sh installs it: python3 -m pip install aiosmtpd)",
            |v| v["ready"] == port,
        );
        Self {
            port,
            ca_file: dir.0.join("ca.pem"),
            process,
            _dir: dir,
        }
    }

    /// The next mail taken that satisfies `wanted`, within `within`.
    pub fn wait_mail(
        &mut self,
        within: Duration,
        what: &str,
        wanted: impl Fn(&Value) -> bool,
    ) -> Value {
        self.process
            .wait_json(within, what, |v| v.get("subject").is_some() && wanted(v))
    }

    /// The next login it refused, within `within`.
    pub fn wait_refused(&mut self, within: Duration) -> Value {
        self.process
            .wait_json(within, "a refused login", |v| v.get("refused").is_some())
    }

    /// Fail on any mail satisfying `unwanted` within `within`.
    pub fn expect_no_mail(
        &mut self,
        within: Duration,
        what: &str,
        unwanted: impl Fn(&Value) -> bool,
    ) {
        self.process
            .expect_no_json(within, what, |v| v.get("subject").is_some() && unwanted(v));
    }
}
