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

    pub fn redacted(&self) -> &str {
        &self.redacted
    }
}

impl FromStr for BrokerUrl {
    type Err = Error;

    fn from_str(raw: &str) -> Result<Self, Error> {
        let raw = raw.trim();
        let invalid = |why: &str| Error::InvalidUrl {
            url: redact_unparsed(raw),
            why: why.to_owned(),
        };
        let mut parsed = url::Url::parse(raw).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(parsed.scheme(), "amqp" | "amqps") {
            return Err(invalid("the scheme must be amqp:// or amqps://"));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(invalid("it has no host name"));
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

/// Best effort for URLs too broken to parse: hide whatever sits between the
/// first ':' after the scheme and the '@'.
fn redact_unparsed(raw: &str) -> String {
    let Some(at) = raw.rfind('@') else {
        return raw.to_owned();
    };
    let start = raw.find("://").map_or(0, |i| i + 3);
    match raw[start..at].find(':') {
        Some(colon) => format!("{}:****{}", &raw[..start + colon], &raw[at..]),
        None => raw.to_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn unparsable_url_is_still_redacted_in_the_error() {
        let err = "amqp://guest:hunter2@[bad/"
            .parse::<BrokerUrl>()
            .unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("guest:****@"), "{text}");
    }
}
