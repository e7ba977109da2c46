use std::fmt;
use std::str::FromStr;

use crate::Error;

/// A validated `amqp://` or `amqps://` URL.
///
/// `Display` and `Debug` redact the password, so a `BrokerUrl` can go into
/// logs, errors and screens as it is; only the transport reads the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    raw: String,
    redacted: String,
}

impl BrokerUrl {
    /// The URL with its password, for the AMQP client only.
    pub(crate) fn expose_secret(&self) -> &str {
        &self.raw
    }

    pub fn is_tls(&self) -> bool {
        self.raw.starts_with("amqps:")
    }

    /// Whether the URL carries a password (which `Display` hides).
    pub fn has_password(&self) -> bool {
        url::Url::parse(&self.raw).is_ok_and(|url| url.password().is_some())
    }

    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// What to add when a connection to this URL fails, if its shape
    /// explains it: plain `amqp://` to 5671, the port of AMQP over TLS
    /// (CloudAMQP's and RabbitMQ's), fails at the first byte of the handshake
    /// with an error that names neither.
    pub fn connect_hint(&self) -> Option<&'static str> {
        let port = url::Url::parse(&self.raw).ok()?.port();
        (!self.is_tls() && port == Some(AMQPS_PORT))
            .then_some("port 5671 is AMQP over TLS: use amqps:// (plain amqp:// is port 5672)")
    }
}

/// The IANA port of AMQP over TLS.
const AMQPS_PORT: u16 = 5671;

impl FromStr for BrokerUrl {
    type Err = Error;

    fn from_str(raw: &str) -> Result<Self, Error> {
        let raw = raw.trim();
        let invalid = |why: &str| Error::InvalidUrl {
            url: redact_unparsed(raw),
            why: why.to_owned(),
        };
        // The parser ends the host part at the first '/', '?' or '#': a
        // password holding one of them leaves its '@' behind, and the rest
        // would pass for a port and a path, and be shown unmasked.
        let after_scheme = raw.find("://").map_or(0, |i| i + 3);
        let host_part_end = raw[after_scheme..]
            .find(['/', '?', '#'])
            .map_or(raw.len(), |i| after_scheme + i);
        if raw[host_part_end..].contains('@') {
            return Err(invalid(
                "an '@' after the host: percent-encode a password's '/', '?' or '#' (%2F, %3F, %23), and a vhost's '@' (%40)",
            ));
        }
        let mut parsed = url::Url::parse(raw).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(parsed.scheme(), "amqp" | "amqps") {
            return Err(invalid("the scheme must be amqp:// or amqps://"));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(invalid("it has no host name"));
        }
        for (field, encoded) in [
            ("user name", parsed.username()),
            ("password", parsed.password().unwrap_or("")),
        ] {
            if percent_decode(encoded).is_none() {
                return Err(invalid(&format!(
                    "the {field} is not valid percent-encoded UTF-8"
                )));
            }
        }
        for (key, value) in parsed.query_pairs() {
            check_option(&key, &value).map_err(|why| invalid(&why))?;
        }
        if parsed.password().is_some() {
            // Cannot fail: the URL has a host, so it can carry credentials.
            let _ = parsed.set_password(Some("****"));
        }
        Ok(Self {
            raw: raw.to_owned(),
            redacted: parsed.to_string(),
        })
    }
}

/// The query options the AMQP client reads, checked here because the client
/// would otherwise fail the same way on every reconnect, forever.
fn check_option(key: &str, value: &str) -> Result<(), String> {
    let number = |max: u64| {
        value
            .parse::<u64>()
            .ok()
            .filter(|n| *n <= max)
            .map(|_| ())
            .ok_or_else(|| format!("?{key}= must be a whole number from 0 to {max}, got {value:?}"))
    };
    match key {
        "heartbeat" | "channel_max" => number(u16::MAX.into()),
        "frame_max" => number(u32::MAX.into()),
        "connection_timeout" => number(u64::MAX),
        "auth_mechanism" => match value {
            "plain" | "amqplain" | "external" => Ok(()),
            _ => Err(format!(
                "?auth_mechanism= must be plain, amqplain or external, got {value:?}"
            )),
        },
        _ => Err(format!(
            "unknown option ?{key}=; known: heartbeat, channel_max, frame_max, connection_timeout, auth_mechanism"
        )),
    }
}

/// `None` when `%`-escapes do not decode to UTF-8.
fn percent_decode(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Hide the password of every `scheme://user:password@` in free text, such
/// as an argument parser's error that quotes a stray argument.
pub fn redact_credentials_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(scheme_end) = rest.find("://") {
        let after_scheme = scheme_end + 3;
        out.push_str(&rest[..after_scheme]);
        rest = &rest[after_scheme..];
        // The whole word, not only up to the first '/': a password with an
        // unescaped '/' in it is a broken URL, and still a password. Up to
        // the next URL, though, when several are joined with commas.
        let mut word_len = rest
            .find(|c: char| c.is_whitespace() || matches!(c, '\'' | '"' | '`'))
            .unwrap_or(rest.len());
        if let Some(next) = rest[..word_len].find("://") {
            let scheme_start = rest[..next]
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
                .map_or(0, |i| i + 1);
            if rest[..scheme_start].ends_with(',') {
                word_len = scheme_start - 1;
            }
        }
        redact_after_scheme(&rest[..word_len], &mut out);
        rest = &rest[word_len..];
    }
    out.push_str(rest);
    out
}

/// Best effort for URLs too broken to parse.
fn redact_unparsed(raw: &str) -> String {
    let start = raw.find("://").map_or(0, |i| i + 3);
    let mut out = raw[..start].to_owned();
    redact_after_scheme(&raw[start..], &mut out);
    out
}

/// One URL's text after `scheme://`, onto `out` with the password masked:
/// between the first ':' and the last '@'; with no '@', whatever follows a
/// ':' in the host part that is not a port number (`amqp://user:secret`,
/// the host forgotten). Masks too much rather than too little.
fn redact_after_scheme(word: &str, out: &mut String) {
    if let Some(at) = word.rfind('@') {
        match word[..at].find(':') {
            Some(colon) => {
                out.push_str(&word[..colon]);
                out.push_str(":****");
                out.push_str(&word[at..]);
            }
            None => out.push_str(word),
        }
        return;
    }
    let host_end = word.find(['/', '?', '#']).unwrap_or(word.len());
    let host = &word[..host_end];
    // An IPv6 address's colons are not a password's.
    let search_from = if host.starts_with('[') {
        host.find(']').map_or(host.len(), |i| i + 1)
    } else {
        0
    };
    match host[search_from..].find(':').map(|i| i + search_from) {
        Some(colon) if !host[colon + 1..].bytes().all(|b| b.is_ascii_digit()) => {
            out.push_str(&word[..colon]);
            out.push_str(":****");
            out.push_str(&word[host_end..]);
        }
        _ => out.push_str(word),
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BrokerUrl({})", self.redacted)
    }
}

/// One or more brokers, tried in this order: the nodes of a RabbitMQ
/// cluster, or a primary and a standby. On loss, a link tries the next one
/// (and round again), with its usual backoff.
///
/// Parsed from URLs separated by commas (`amqp://a,amqp://b`): a comma
/// starts a new URL only where a scheme (`amqp://`) follows, so a comma
/// inside a URL (a password's) stays in it. `Display` and `Debug` are redacted like
/// [`BrokerUrl`]'s.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUrls(Vec<BrokerUrl>);

impl BrokerUrls {
    /// Never empty.
    pub fn as_slice(&self) -> &[BrokerUrl] {
        &self.0
    }

    pub fn first(&self) -> &BrokerUrl {
        &self.0[0]
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromStr for BrokerUrls {
    type Err = Error;

    fn from_str(raw: &str) -> Result<Self, Error> {
        let mut items: Vec<String> = Vec::new();
        for piece in raw.split(',') {
            // A scheme (`amqp://`, or a wrong one, to be refused) starts a URL.
            let starts_one = piece
                .trim_start()
                .split_once("://")
                .is_some_and(|(scheme, _)| {
                    !scheme.is_empty()
                        && scheme
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
                });
            match items.last_mut() {
                Some(last) if !starts_one => {
                    last.push(',');
                    last.push_str(piece);
                }
                _ => items.push(piece.to_owned()),
            }
        }
        let urls = items
            .iter()
            .map(|item| item.parse())
            .collect::<Result<Vec<BrokerUrl>, Error>>()?;
        Ok(Self(urls))
    }
}

impl From<BrokerUrl> for BrokerUrls {
    fn from(url: BrokerUrl) -> Self {
        Self(vec![url])
    }
}

impl From<&BrokerUrl> for BrokerUrls {
    fn from(url: &BrokerUrl) -> Self {
        Self(vec![url.clone()])
    }
}

impl From<&BrokerUrls> for BrokerUrls {
    fn from(urls: &BrokerUrls) -> Self {
        urls.clone()
    }
}

impl fmt::Display for BrokerUrls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, url) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(url.redacted())?;
        }
        Ok(())
    }
}

impl fmt::Debug for BrokerUrls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BrokerUrls({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_amqp_to_the_tls_port_gets_a_hint_and_nothing_else_does() {
        let hint = |url: &str| url.parse::<BrokerUrl>().unwrap().connect_hint();
        assert!(
            hint("amqp://u:p@host:5671/vh")
                .unwrap()
                .contains("amqps://")
        );
        for fine in [
            "amqps://u:p@host:5671/vh",
            "amqp://u:p@host:5672/vh",
            "amqp://u:p@host/vh",
            "amqps://u:p@host/vh",
        ] {
            assert_eq!(hint(fine), None, "{fine}");
        }
    }

    #[test]
    fn several_urls_in_order_redacted_and_a_comma_inside_one_kept() {
        let urls: BrokerUrls = "amqp://u:p1@a:5672/%2f, amqps://u:p,2@b/vh,amqp://c"
            .parse()
            .unwrap();
        assert_eq!(urls.len(), 3);
        assert_eq!(urls.as_slice()[1].expose_secret(), "amqps://u:p,2@b/vh");
        let shown = urls.to_string();
        assert_eq!(
            shown,
            "amqp://u:****@a:5672/%2f, amqps://u:****@b/vh, amqp://c"
        );
        assert!(!format!("{urls:?}").contains("p1"));
        let one: BrokerUrls = "amqp://localhost".parse().unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one.first().redacted(), "amqp://localhost");
        let err = "amqp://a,amqp://u:secret@b?heartbeat=abc"
            .parse::<BrokerUrls>()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("heartbeat") && !err.contains("secret"),
            "{err}"
        );
        assert!("".parse::<BrokerUrls>().is_err());
    }

    #[test]
    fn password_never_shows() {
        let url: BrokerUrl = "amqps://user:s3cret@host.cloudamqp.com/vhost"
            .parse()
            .unwrap();
        assert_eq!(
            url.to_string(),
            "amqps://user:****@host.cloudamqp.com/vhost"
        );
        assert!(!format!("{url:?}").contains("s3cret"));
        assert!(url.is_tls());
        assert_eq!(
            url.expose_secret(),
            "amqps://user:s3cret@host.cloudamqp.com/vhost"
        );
    }

    #[test]
    fn url_without_password_is_unchanged() {
        let url: BrokerUrl = "amqp://127.0.0.1:5672/%2f".parse().unwrap();
        assert_eq!(url.redacted(), "amqp://127.0.0.1:5672/%2f");
        assert!(!url.is_tls());
    }

    #[test]
    fn rejects_other_schemes_and_garbage() {
        for bad in ["http://guest:pw@localhost", "not a url", "amqp://", ""] {
            let err = bad.parse::<BrokerUrl>().unwrap_err().to_string();
            assert!(err.starts_with("invalid broker URL"), "{bad}: {err}");
            assert!(!err.contains("pw@"), "{err}");
        }
    }

    #[test]
    fn permanent_mistakes_in_options_and_credentials_are_refused_at_once() {
        for (bad, why) in [
            ("amqp://h/%2f?heartbeat=abc", "?heartbeat="),
            ("amqp://h/%2f?heartbeat=70000", "?heartbeat="),
            ("amqp://h/%2f?auth_mechanism=bogus", "?auth_mechanism="),
            ("amqp://h/%2f?hearbeat=10", "unknown option ?hearbeat="),
            ("amqp://u:%FF@h/%2f", "password is not valid"),
            ("amqp://u:%G1@h/%2f", "password is not valid"),
        ] {
            let err = bad.parse::<BrokerUrl>().unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(!err.contains("%FF") && !err.contains("%G1"), "{err}");
        }
        for good in [
            "amqp://u:p%40ss@h/%2f?heartbeat=30&channel_max=16",
            "amqps://u:p@h/v?auth_mechanism=external&frame_max=131072&connection_timeout=5000",
        ] {
            assert!(good.parse::<BrokerUrl>().is_ok(), "{good}");
        }
    }

    #[test]
    fn credentials_in_free_text_are_hidden() {
        assert_eq!(
            redact_credentials_in("error: unexpected argument 'amqps://u:s3cret@host/v' found"),
            "error: unexpected argument 'amqps://u:****@host/v' found"
        );
        assert_eq!(
            redact_credentials_in("amqp://a:b@c and amqp://d@e and https://x"),
            "amqp://a:****@c and amqp://d@e and https://x"
        );
    }

    #[test]
    fn a_password_is_hidden_in_urls_too_broken_to_parse() {
        for (text, shown) in [
            // An unescaped '/' in the password.
            (
                "unrecognized subcommand 'amqp://hb:ab/Pw-S3cr3t@127.0.0.1:5672/%2f'",
                "unrecognized subcommand 'amqp://hb:****@127.0.0.1:5672/%2f'",
            ),
            // The host forgotten: the password parses as a port.
            ("amqp://hb:Pw-S3cr3t", "amqp://hb:****"),
            ("amqp://hb:Pw-S3cr3t/%2f", "amqp://hb:****/%2f"),
            // Several URLs joined with commas, each masked.
            (
                "amqp://h/%2f,amqp://u:secret@h2",
                "amqp://h/%2f,amqp://u:****@h2",
            ),
            (
                "amqp://u:p@h,amqps://v:secret@h2/vh",
                "amqp://u:****@h,amqps://v:****@h2/vh",
            ),
            ("amqp://a,amqp://u:secret", "amqp://a,amqp://u:****"),
            // Ports and IPv6 addresses are not passwords.
            ("amqp://host:5672/%2f", "amqp://host:5672/%2f"),
            ("amqp://[::1]:5672/vh", "amqp://[::1]:5672/vh"),
            ("amqp://[::1]/vh", "amqp://[::1]/vh"),
        ] {
            assert_eq!(redact_credentials_in(text), shown, "{text}");
        }
        let error = "amqp://hb:Pw-S3cr3t".parse::<BrokerUrl>().unwrap_err();
        assert!(!error.to_string().contains("Pw-S3cr3t"), "{error}");
        // URLs the parser would take, with the password's tail as a path,
        // a query or a fragment: refused, and masked in the refusal.
        for raw in [
            "amqp://hb:ab/Pw-S3cr3t@h/%2f",
            "amqp://hb:2024/Pw-S3cr3t@host/%2f",
            "amqp://hb:/Pw-S3cr3t@host/%2f",
            "amqp://hb:2024#Pw-S3cr3t@host",
            "amqp://hb:2024?Pw-S3cr3t@host",
        ] {
            let error = raw.parse::<BrokerUrl>().unwrap_err().to_string();
            assert!(!error.contains("Pw-S3cr3t"), "{raw}: {error}");
            assert!(error.contains("percent-encode"), "{raw}: {error}");
        }
    }

    #[test]
    fn unparsable_url_is_still_redacted_in_the_error() {
        let err = "amqp://guest:hunter2@[bad/"
            .parse::<BrokerUrl>()
            .unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("guest:****@"), "{text}");
    }
}
