//! Signing keys and webhook signatures.
//!
//! Every delivery carries Standard Webhooks headers signed with the subscription's signing key
//! bytes as the HMAC-SHA256 key, so a receiver verifies with any Standard Webhooks library given
//! `whsec_` + base64(signingKey). Zettle subscriptions additionally get `X-iZettle-Signature`.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use rand::distr::{Alphanumeric, SampleString};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Length of a subscription's signing key, as in the Zettle responses.
pub const SIGNING_KEY_LEN: usize = 64;

/// 64 random alphanumerics from rand's thread RNG, a CSPRNG (ChaCha) seeded by the OS.
pub fn generate_signing_key() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), SIGNING_KEY_LEN)
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes any key length")
}

fn hmac_parts(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = mac(key);
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// `webhook-signature` value: `v1,` + base64(HMAC-SHA256(key, id + "." + timestamp + "." + body)).
pub fn standard_webhooks_signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let sig = hmac_parts(key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    format!("v1,{}", BASE64.encode(sig))
}

/// The secret in the form Standard Webhooks libraries take: `whsec_` + base64(key bytes).
pub fn standard_webhooks_secret(signing_key: &str) -> String {
    format!("whsec_{}", BASE64.encode(signing_key.as_bytes()))
}

/// Key bytes from either a raw signing key or a `whsec_…` secret.
pub fn key_bytes(secret: &str) -> Result<Vec<u8>, String> {
    match secret.strip_prefix("whsec_") {
        Some(b64) => BASE64.decode(b64).map_err(|e| format!("the whsec_ secret is not valid base64: {e}")),
        None => Ok(secret.as_bytes().to_vec()),
    }
}

/// Checks a `webhook-signature` header (space-separated `v1,<base64>` entries, any may match)
/// in constant time.
pub fn verify_standard_webhooks(key: &[u8], id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let ts = timestamp.to_string();
    header.split(' ').filter_map(|entry| entry.strip_prefix("v1,")).any(|b64| {
        let Ok(candidate) = BASE64.decode(b64) else { return false };
        let mut mac = mac(key);
        for part in [id.as_bytes(), b".", ts.as_bytes(), b".", body] {
            mac.update(part);
        }
        mac.verify_slice(&candidate).is_ok()
    })
}

/// `X-iZettle-Signature`: lowercase hex HMAC-SHA256 keyed by the signing key over
/// `timestamp + "." + payload`.
pub fn zettle_signature(signing_key: &str, timestamp: &str, payload: &str) -> String {
    let sig = hmac_parts(signing_key.as_bytes(), &[timestamp.as_bytes(), b".", payload.as_bytes()]);
    sig.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_keys_are_64_alphanumerics_and_differ() {
        let a = generate_signing_key();
        let b = generate_signing_key();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn standard_webhooks_reference_vector() {
        // The example from the Standard Webhooks specification.
        let key = key_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let sig = standard_webhooks_signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(verify_standard_webhooks(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            body,
            &format!("v1,bogus {sig}")
        ));
        assert!(!verify_standard_webhooks(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265331, body, &sig));
    }

    #[test]
    fn whsec_secret_round_trips_the_signing_key() {
        let key = generate_signing_key();
        assert_eq!(key_bytes(&standard_webhooks_secret(&key)).unwrap(), key.as_bytes());
    }

    #[test]
    fn zettle_signature_is_lowercase_hex_hmac() {
        // The signature equals an HMAC of the joined string, and the HMAC itself matches the
        // well-known "quick brown fox" vector.
        let sig = zettle_signature("key", "2021-03-29T16:31:47.087Z", "{\"a\":1}");
        assert_eq!(sig.len(), 64);
        assert!(sig.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
        let joined = hmac_parts(b"key", &[b"2021-03-29T16:31:47.087Z.{\"a\":1}"]);
        assert_eq!(sig, joined.iter().map(|b| format!("{b:02x}")).collect::<String>());
        let fox = hmac_parts(b"key", &[b"The quick brown fox jumps over the lazy dog"]);
        assert_eq!(
            fox.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }
}
