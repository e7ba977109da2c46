//! Signed heartbeats: HMAC-SHA256 over the exact body bytes, under a key
//! shared through the environment, carried hex-encoded in an AMQP header.
//!
//! A header rather than a JSON field, so that what is signed is the body as
//! sent, byte for byte: no canonical JSON to agree on, and any language with
//! an HMAC and a hex encoder can produce it (docs/PROTOCOL.md, "Signing").

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::Error;
use crate::wire::RejectReason;

/// The AMQP header (a long string) that carries the lowercase hex MAC.
pub const MAC_HEADER: &str = "x-heartbeat-mac";
/// The environment variable with the key: `key`, or `key,other` during a
/// rotation (the first signs, both are accepted).
pub const KEY_ENV: &str = "HEARTBEAT_KEY";
/// Shortest key accepted, in bytes: a short shared secret is guessable offline
/// from one recorded message.
pub const MIN_KEY_LEN: usize = 16;

/// The keys a participant signs and verifies with. `Debug` never shows them.
#[derive(Clone)]
pub struct Keys {
    current: Vec<u8>,
    /// Also accepted, during a rotation.
    previous: Option<Vec<u8>>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("current", &"<redacted>")
            .field("previous", &self.previous.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Keys {
    /// Sign with `current`; accept `current` or `other`.
    pub fn new(current: impl Into<Vec<u8>>, other: Option<Vec<u8>>) -> Result<Self, Error> {
        let current = current.into();
        check_key(&current)?;
        if let Some(other) = &other {
            check_key(other)?;
        }
        Ok(Self {
            current,
            previous: other,
        })
    }

    /// The keys in [`KEY_ENV`]; `None` when it is not set (heartbeats
    /// unsigned, as before keys existed).
    pub fn from_env() -> Result<Option<Self>, Error> {
        match std::env::var_os(KEY_ENV) {
            None => Ok(None),
            Some(value) => {
                let value = value
                    .into_string()
                    .map_err(|_| Error::InvalidOption(format!("{KEY_ENV} must be UTF-8 text")))?;
                Self::parse(&value).map(Some)
            }
        }
    }

    /// `key` or `key,other`: the first signs, both are accepted.
    pub fn parse(value: &str) -> Result<Self, Error> {
        let mut keys = value.split(',');
        let current = keys.next().unwrap_or_default();
        let other = keys.next();
        if keys.next().is_some() {
            return Err(Error::InvalidOption(format!(
                "{KEY_ENV} holds at most two keys, separated by a comma"
            )));
        }
        Self::new(current, other.map(|k| k.as_bytes().to_vec()))
    }

    /// The lowercase hex HMAC-SHA256 of `body` under the current key.
    pub fn sign(&self, body: &[u8]) -> String {
        hmac_sha256_hex(&self.current, body)
    }

    /// Whether `header` (the [`MAC_HEADER`] value, if any) is a MAC of
    /// `body` under either key. Compared in constant time.
    pub fn verify(&self, body: &[u8], header: Option<&[u8]>) -> Result<(), RejectReason> {
        let header = header.ok_or(RejectReason::Unsigned)?;
        let tag = decode_hex(header).ok_or(RejectReason::BadSignature)?;
        let keys = std::iter::once(&self.current).chain(self.previous.as_ref());
        for key in keys {
            if mac(key, body).verify_slice(&tag).is_ok() {
                return Ok(());
            }
        }
        Err(RejectReason::BadSignature)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn check_key(key: &[u8]) -> Result<(), Error> {
    if key.len() < MIN_KEY_LEN {
        return Err(Error::InvalidOption(format!(
            "each key in {KEY_ENV} must be at least {MIN_KEY_LEN} bytes (for example `openssl rand -hex 32`)"
        )));
    }
    Ok(())
}

/// The lowercase hex HMAC-SHA256 of `body` under `key`: the heartbeat MAC,
/// and what the monitor's webhooks sign their bodies with.
pub fn hmac_sha256_hex(key: &[u8], body: &[u8]) -> String {
    let tag = mac(key, body).finalize().into_bytes();
    let mut out = String::with_capacity(tag.len() * 2);
    for byte in tag {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

fn mac(key: &[u8], body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(body);
    mac
}

/// 64 hex digits, either case, to 32 bytes; anything else is `None`.
fn decode_hex(text: &[u8]) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef-current";
    const OLD: &[u8] = b"0123456789abcdef-previous";

    fn keys(current: &[u8], previous: Option<&[u8]>) -> Keys {
        Keys::new(current, previous.map(<[u8]>::to_vec)).unwrap()
    }

    #[test]
    fn signs_with_hmac_sha256_over_the_body_in_lowercase_hex() {
        // printf %s '{"v":1}' | openssl dgst -sha256 -hmac 0123456789abcdef-current
        assert_eq!(
            keys(KEY, None).sign(br#"{"v":1}"#),
            "fcd1f219da99b0aee2c17a9ae5dd2666d79bed74356250753b297236e0ccd15a"
        );
    }

    #[test]
    fn verifies_its_own_signature_in_either_case_and_nothing_else() {
        let k = keys(KEY, None);
        let body = br#"{"v":1,"type":"echo","service":"a","instance":"i","seq":7}"#;
        let mac = k.sign(body);
        assert_eq!(k.verify(body, Some(mac.as_bytes())), Ok(()));
        assert_eq!(k.verify(body, Some(mac.to_uppercase().as_bytes())), Ok(()));
        assert_eq!(k.verify(body, None), Err(RejectReason::Unsigned));
        // The seq is in the body, so the MAC of seq 7 does not cover seq 8.
        let other = br#"{"v":1,"type":"echo","service":"a","instance":"i","seq":8}"#;
        assert_eq!(
            k.verify(other, Some(mac.as_bytes())),
            Err(RejectReason::BadSignature)
        );
        for junk in [&b""[..], b"zz", &mac.as_bytes()[..63], b"sha256=00"] {
            assert_eq!(k.verify(body, Some(junk)), Err(RejectReason::BadSignature));
        }
        let stranger = keys(b"someone-else's-key-entirely", None);
        assert_eq!(
            stranger.verify(body, Some(mac.as_bytes())),
            Err(RejectReason::BadSignature)
        );
    }

    #[test]
    fn rotation_accepts_the_previous_key_and_signs_with_the_new_one() {
        let body = b"{}";
        let old_signer = keys(OLD, None);
        let rotating = keys(KEY, Some(OLD));
        let new_signer = keys(KEY, None);
        // Mid-rotation, both generations are heard.
        assert_eq!(
            rotating.verify(body, Some(old_signer.sign(body).as_bytes())),
            Ok(())
        );
        assert_eq!(
            rotating.verify(body, Some(new_signer.sign(body).as_bytes())),
            Ok(())
        );
        // It signs with the new key only, so a participant not yet rotated
        // (old key alone) refuses it until it gets the new key.
        assert_eq!(rotating.sign(body), new_signer.sign(body));
        assert_eq!(
            old_signer.verify(body, Some(rotating.sign(body).as_bytes())),
            Err(RejectReason::BadSignature)
        );
    }

    #[test]
    fn the_variable_holds_one_key_or_two_separated_by_a_comma() {
        let body = b"{}";
        let one = Keys::parse("0123456789abcdef-current").unwrap();
        assert_eq!(one.sign(body), keys(KEY, None).sign(body));
        let two = Keys::parse("0123456789abcdef-current,0123456789abcdef-previous").unwrap();
        assert_eq!(two.sign(body), keys(KEY, None).sign(body));
        let old = keys(OLD, None).sign(body);
        assert_eq!(two.verify(body, Some(old.as_bytes())), Ok(()));
        for bad in [
            "",
            "short",
            "0123456789abcdef,",
            "a,b,c",
            "0123456789abcdef,x",
        ] {
            let error = Keys::parse(bad).unwrap_err();
            assert!(error.is_configuration(), "{bad}");
            assert!(error.to_string().contains(KEY_ENV), "{error}");
        }
        let three = "0123456789abcdef,0123456789abcdef,0123456789abcdef";
        let error = Keys::parse(three).unwrap_err();
        assert!(error.to_string().contains("at most two"), "{error}");
    }

    #[test]
    fn short_keys_are_refused_and_keys_never_show() {
        let error = Keys::new(b"short-secret".to_vec(), None).unwrap_err();
        assert!(error.is_configuration());
        assert!(error.to_string().contains(KEY_ENV), "{error}");
        assert!(!error.to_string().contains("short-secret"), "{error}");
        assert!(Keys::new(KEY, Some(b"tiny".to_vec())).is_err());
        let shown = format!("{:?}", keys(KEY, Some(OLD)));
        assert!(!shown.contains("0123456789"), "{shown}");
    }
}
