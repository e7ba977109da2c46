//! The HTTP API's tokens. A write token turns the write endpoints on (no
//! token: they answer 403 and say how to turn them on); a read token, when
//! set, guards every read except `/healthz`. Tokens come from the
//! environment or a file, never a flag (a command line is readable by every
//! local user), are compared in constant time, and are never printed:
//! `Token`'s `Debug` is redacted and no message quotes one.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use heartbeat_config::HttpSettings;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The write token's variable; `monitor silence` reads it too.
pub const TOKEN_ENV: &str = "HEARTBEAT_API_TOKEN";
/// The read token's variable; `monitor status` and `monitor silence list` send it.
pub const READ_TOKEN_ENV: &str = "HEARTBEAT_API_READ_TOKEN";
/// Shorter tokens are refused: guessable.
const MIN_LEN: usize = 16;

/// A secret compared in constant time, and never shown.
struct Token(Vec<u8>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(****)")
    }
}

impl Token {
    /// Both sides are hashed first, so neither the comparison's time nor
    /// its length says anything about the token.
    fn matches(&self, given: &[u8]) -> bool {
        let ours = Sha256::digest(&self.0);
        let theirs = Sha256::digest(given);
        ours.as_slice().ct_eq(theirs.as_slice()).into()
    }
}

/// The API's tokens, shared by the router's handlers.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    write: Option<Arc<Token>>,
    read: Option<Arc<Token>>,
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No write token configured: writes are off.
    WritesOff,
    /// No `Authorization: Bearer` header.
    Missing,
    /// A token that is not ours.
    Wrong,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::WritesOff => (
                StatusCode::FORBIDDEN,
                format!(
                    "writes are off on this monitor: start it with {TOKEN_ENV} (or [http] token_file) set\n"
                ),
            )
                .into_response(),
            Refusal::Missing => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "a token is needed: send the header Authorization: Bearer <token>\n",
            )
                .into_response(),
            Refusal::Wrong => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")],
                "the token is not this monitor's\n",
            )
                .into_response(),
        }
    }
}

impl Tokens {
    /// Tokens for tests and embedders; `None` leaves one unset.
    pub fn new(write: Option<&str>, read: Option<&str>) -> Self {
        Self {
            write: write.map(|t| Arc::new(Token(t.as_bytes().to_vec()))),
            read: read.map(|t| Arc::new(Token(t.as_bytes().to_vec()))),
        }
    }

    /// From `env` (the variable wins) or the files `[http]` names. A file
    /// that cannot be read, or a token shorter than 16 bytes, is an error
    /// that names where it came from, never what it holds.
    pub fn load(http: &HttpSettings, env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let one = |variable: &str, file: &str, key: &str| -> Result<Option<Arc<Token>>, String> {
            let (text, source) = match env(variable).filter(|v| !v.is_empty()) {
                Some(value) => (value, variable.to_owned()),
                None if file.is_empty() => return Ok(None),
                None => {
                    // The path is what the user typed: a URL put here by
                    // mistake must not print its password.
                    let shown = orchestrator_lib::plumbing::redact_credentials_in(file);
                    let text = std::fs::read_to_string(file).map_err(|e| {
                        format!("invalid setting `http.{key}`: cannot read {shown}: {e}")
                    })?;
                    (text, format!("the file {shown} (http.{key})"))
                }
            };
            let token = text.trim();
            if token.len() < MIN_LEN {
                return Err(format!(
                    "the API token from {source} is shorter than {MIN_LEN} characters; make one with: openssl rand -hex 32"
                ));
            }
            Ok(Some(Arc::new(Token(token.as_bytes().to_vec()))))
        };
        Ok(Self {
            write: one(TOKEN_ENV, &http.token_file, "token_file")?,
            read: one(READ_TOKEN_ENV, &http.read_token_file, "read_token_file")?,
        })
    }

    pub fn writes_enabled(&self) -> bool {
        self.write.is_some()
    }

    pub fn reads_guarded(&self) -> bool {
        self.read.is_some()
    }

    /// A write needs the write token.
    pub fn check_write(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(write) = &self.write else {
            return Err(Refusal::WritesOff);
        };
        let given = bearer(headers).ok_or(Refusal::Missing)?;
        if write.matches(given) {
            Ok(())
        } else {
            Err(Refusal::Wrong)
        }
    }

    /// A read needs the read token, or the write token, when a read token is set.
    pub fn check_read(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(read) = &self.read else {
            return Ok(());
        };
        let given = bearer(headers).ok_or(Refusal::Missing)?;
        // Both compared, whichever matches, so the time says nothing of which.
        let by_read = read.matches(given);
        let by_write = self.write.as_ref().is_some_and(|w| w.matches(given));
        if by_read | by_write {
            Ok(())
        } else {
            Err(Refusal::Wrong)
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let scheme = value.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| value[7..].trim_ascii())
}

/// Middleware for reads: every page but `/healthz` (supervisors probe it
/// without secrets) needs the read token when one is set. Writes check
/// their own token in their handlers.
pub async fn guard_reads(State(tokens): State<Tokens>, request: Request, next: Next) -> Response {
    let is_read =
        request.method() == axum::http::Method::GET || request.method() == axum::http::Method::HEAD;
    if is_read
        && request.uri().path() != "/healthz"
        && let Err(refusal) = tokens.check_read(request.headers())
    {
        return refusal.into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    const TOKEN: &str = "0123456789abcdef0123";

    #[test]
    fn writes_need_the_write_token_and_are_off_without_one() {
        let off = Tokens::default();
        assert_eq!(
            off.check_write(&headers(&format!("Bearer {TOKEN}"))),
            Err(Refusal::WritesOff)
        );
        let on = Tokens::new(Some(TOKEN), None);
        assert_eq!(on.check_write(&HeaderMap::new()), Err(Refusal::Missing));
        assert_eq!(
            on.check_write(&headers("Bearer wrong-token-0000000")),
            Err(Refusal::Wrong)
        );
        assert_eq!(
            on.check_write(&headers(&format!("bearer  {TOKEN} "))),
            Ok(())
        );
        assert_eq!(on.check_write(&headers(TOKEN)), Err(Refusal::Missing));
        // Reads stay open without a read token.
        assert_eq!(on.check_read(&HeaderMap::new()), Ok(()));
    }

    #[test]
    fn a_read_token_guards_reads_and_the_write_token_reads_too() {
        let t = Tokens::new(Some(TOKEN), Some("reader-token-000000"));
        assert_eq!(t.check_read(&HeaderMap::new()), Err(Refusal::Missing));
        assert_eq!(t.check_read(&headers("Bearer reader-token-000000")), Ok(()));
        assert_eq!(t.check_read(&headers(&format!("Bearer {TOKEN}"))), Ok(()));
        assert_eq!(t.check_read(&headers("Bearer nope")), Err(Refusal::Wrong));
        // The read token does not write.
        assert_eq!(
            t.check_write(&headers("Bearer reader-token-000000")),
            Err(Refusal::Wrong)
        );
    }

    #[test]
    fn tokens_load_from_the_environment_first_then_a_file_and_short_ones_are_refused() {
        let dir = std::env::temp_dir().join(format!("hb-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "from-the-file-0123456\n").unwrap();
        let http = HttpSettings {
            listen: String::new(),
            token_file: file.display().to_string(),
            read_token_file: String::new(),
            max_connections: 256,
        };
        let from_file = Tokens::load(&http, |_| None).unwrap();
        assert_eq!(
            from_file.check_write(&headers("Bearer from-the-file-0123456")),
            Ok(())
        );
        let from_env = Tokens::load(&http, |name| {
            (name == TOKEN_ENV).then(|| "from-the-environment-0".to_string())
        })
        .unwrap();
        assert_eq!(
            from_env.check_write(&headers("Bearer from-the-environment-0")),
            Ok(())
        );
        let short =
            Tokens::load(&http, |name| (name == TOKEN_ENV).then(|| "tiny42".into())).unwrap_err();
        assert!(
            short.contains(TOKEN_ENV) && !short.contains("tiny42"),
            "{short}"
        );
        let missing = HttpSettings {
            token_file: dir.join("nope").display().to_string(),
            ..http
        };
        assert!(
            Tokens::load(&missing, |_| None)
                .unwrap_err()
                .contains("http.token_file")
        );
        std::fs::remove_dir_all(&dir).unwrap();
        // The token never shows in Debug.
        assert!(!format!("{:?}", Tokens::new(Some(TOKEN), None)).contains(TOKEN));
    }
}
