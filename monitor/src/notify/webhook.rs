//! The generic webhook: one JSON POST per notification (one event, or a
//! group of them), optionally signed.

use heartbeat_config::NotifySettings;
use orchestrator_lib::signing::hmac_sha256_hex;

use super::notification::Notification;

/// The header that carries the body's signature, `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "X-Heartbeat-Signature";

#[derive(Clone)]
pub struct Webhook {
    client: reqwest::Client,
    url: String,
    secret: Option<Vec<u8>>,
}

impl Webhook {
    pub fn new(client: reqwest::Client, entry: &NotifySettings) -> Self {
        Self {
            client,
            url: entry.url.clone(),
            secret: (!entry.secret.is_empty()).then(|| entry.secret.as_bytes().to_vec()),
        }
    }

    pub async fn send(&self, notification: &Notification) -> Result<(), String> {
        let body = notification.body();
        let mut request = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(secret) = &self.secret {
            request = request.header(SIGNATURE_HEADER, sign(secret, &body));
        }
        let response = request.body(body).send().await.map_err(describe)?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the receiver answered {status}"))
        }
    }
}

/// `sha256=` and the lowercase hex HMAC-SHA256 of `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hmac_sha256_hex(secret, body))
}

/// reqwest's errors name the URL, which may carry a token; say what failed without it.
pub fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_hmac_sha256() {
        // RFC 4231, test case 2 (as `openssl dgst -sha256 -hmac Jefe` also says).
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
