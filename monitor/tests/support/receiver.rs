//! A webhook receiver for tests: a real HTTP server on a free loopback port
//! that records every request, and answers with a status the test sets. A
//! grouped body (`"event": "group"`) is recorded as each of its events, each
//! keeping the whole body, its request's number and the group's JSON, so a
//! test that waits for one event finds it alone or in a group.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub json: Value,
    pub at: Instant,
    /// Wall-clock time of arrival, to compare with the monitor's `at` fields.
    pub wall: chrono::DateTime<chrono::Utc>,
    /// Which request it came in (1, 2, ... in arrival order).
    pub request: u64,
    /// The whole body's JSON when it came in a group.
    pub group: Option<Value>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct Hook {
    pub port: u16,
    requests: Receiver<Received>,
    pending: Vec<Received>,
    stop: Arc<AtomicBool>,
    /// The status every request is answered with.
    status: Arc<AtomicU16>,
}

impl Hook {
    pub fn start() -> Self {
        Self::start_on(0)
    }

    /// On `port` (0: any free one), waiting up to 10 s for it to be free
    /// (a receiver just dropped there lets go of it within 50 ms).
    pub fn start_on(port: u16) -> Self {
        let deadline = Instant::now() + Duration::from_secs(10);
        let server = loop {
            match tiny_http::Server::http(("127.0.0.1", port)) {
                Ok(server) => break server,
                Err(e) => {
                    assert!(Instant::now() < deadline, "port {port} not free: {e}");
                    thread::sleep(Duration::from_millis(50));
                }
            }
        };
        let port = server.server_addr().to_ip().expect("an IP listener").port();
        let (tx, requests) = channel();
        let stop = Arc::new(AtomicBool::new(false));
        let status = Arc::new(AtomicU16::new(200));
        let (stopped, answer) = (stop.clone(), status.clone());
        thread::spawn(move || {
            let mut number = 0;
            while !stopped.load(Ordering::Relaxed) {
                let Ok(Some(mut request)) = server.recv_timeout(Duration::from_millis(50)) else {
                    continue;
                };
                number += 1;
                let mut body = Vec::new();
                let _ = request.as_reader().read_to_end(&mut body);
                let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let received = Received {
                    path: request.url().to_owned(),
                    headers: request
                        .headers()
                        .iter()
                        .map(|h| (h.field.to_string(), h.value.to_string()))
                        .collect(),
                    json: json.clone(),
                    body,
                    at: Instant::now(),
                    wall: chrono::Utc::now(),
                    request: number,
                    group: None,
                };
                let code = answer.load(Ordering::Relaxed);
                let _ = request.respond(tiny_http::Response::empty(code));
                let each: Vec<Received> = match json["events"].as_array() {
                    Some(events) if json["event"] == "group" => events
                        .iter()
                        .map(|event| Received {
                            json: event.clone(),
                            group: Some(json.clone()),
                            ..received.clone()
                        })
                        .collect(),
                    _ => vec![received],
                };
                if each.into_iter().any(|r| tx.send(r).is_err()) {
                    break;
                }
            }
        });
        Self {
            port,
            requests,
            pending: Vec::new(),
            stop,
            status,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn answer_with(&self, status: u16) {
        self.status.store(status, Ordering::Relaxed);
    }

    /// The next request (in arrival order) that satisfies `wanted`, within `within`.
    pub fn wait(
        &mut self,
        within: Duration,
        what: &str,
        wanted: impl Fn(&Received) -> bool,
    ) -> Received {
        if let Some(i) = self.pending.iter().position(&wanted) {
            return self.pending.remove(i);
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.requests.recv_timeout(left) {
                Ok(request) if wanted(&request) => return request,
                Ok(request) => self.pending.push(request),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => panic!(
                    "no request with {what} within {within:?}; got: {:#?}",
                    self.pending.iter().map(|r| &r.json).collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Fail on any request matching `unwanted` in the next `within`
    /// (and among those received but not yet matched).
    pub fn expect_none(
        &mut self,
        within: Duration,
        what: &str,
        unwanted: impl Fn(&Received) -> bool,
    ) {
        if let Some(request) = self.pending.iter().find(|r| unwanted(r)) {
            panic!("unexpected {what}: {}", request.json);
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.requests.recv_timeout(left) {
                Ok(request) => {
                    assert!(!unwanted(&request), "unexpected {what}: {}", request.json);
                    self.pending.push(request);
                }
                Err(_) => return,
            }
        }
    }

    /// Every request received so far, matched or not.
    pub fn count(&mut self, wanted: impl Fn(&Received) -> bool) -> usize {
        while let Ok(request) = self.requests.try_recv() {
            self.pending.push(request);
        }
        self.pending.iter().filter(|r| wanted(r)).count()
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Hook {
    /// Stop answering: the port is closed within about 50 ms; what was
    /// received is handed back.
    pub fn stop(mut self) -> Vec<Received> {
        self.stop.store(true, Ordering::Relaxed);
        while let Ok(request) = self.requests.try_recv() {
            self.pending.push(request);
        }
        std::mem::take(&mut self.pending)
    }

    /// Every event received within `within` (with those received but not
    /// yet matched), none kept.
    pub fn drain(&mut self, within: Duration) -> Vec<Received> {
        let mut all = std::mem::take(&mut self.pending);
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.requests.recv_timeout(left) {
                Ok(request) => all.push(request),
                Err(_) => return all,
            }
        }
    }
}

/// A webhook event about `service` of kind `event` ("firing", "resolved", "reminder").
pub fn hook_event<'a>(service: &'a str, event: &'a str) -> impl Fn(&Received) -> bool + 'a {
    move |r| r.json["service"] == service && r.json["event"] == event
}
