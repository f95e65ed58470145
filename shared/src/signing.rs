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
const SIGNING_KEY_LEN: usize = 64;

/// 64 random alphanumerics from rand's thread RNG, a CSPRNG (ChaCha) seeded by the OS.
pub fn generate_signing_key() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), SIGNING_KEY_LEN)
}

pub(crate) fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes any key length")
}

pub(crate) fn hmac_parts(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = mac(key);
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// Lowercase hex, the form of the Zettle and Metro signatures.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `webhook-signature` value: `v1,` + base64(HMAC-SHA256(key, id + "." + timestamp + "." + body)).
pub(crate) fn standard_webhooks_signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let sig = hmac_parts(key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    format!("v1,{}", BASE64.encode(sig))
}

/// The secret in the form Standard Webhooks libraries take: `whsec_` + base64(key bytes).
pub fn standard_webhooks_secret(signing_key: &str) -> String {
    format!("whsec_{}", BASE64.encode(signing_key.as_bytes()))
}

/// Key bytes from either a raw signing key or a `whsec_…` secret.
fn key_bytes(secret: &str) -> Result<Vec<u8>, String> {
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
}

/// Whether `signature` (lowercase hex) is the HMAC-SHA256 of `parts` under `key`, in constant
/// time; a malformed or wrong-length signature is not.
fn verify_hex(key: &[u8], parts: &[&[u8]], signature: &str) -> bool {
    let given = (0..signature.len() / 2)
        .map(|i| u8::from_str_radix(signature.get(2 * i..2 * i + 2).unwrap_or("zz"), 16))
        .collect::<Result<Vec<u8>, _>>();
    signature.len().is_multiple_of(2)
        && given.is_ok_and(|given| {
            let mut m = mac(key);
            for part in parts {
                m.update(part);
            }
            m.verify_slice(&given).is_ok()
        })
}

/// What a received webhook's signatures said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// One line per signature found, e.g. "Standard Webhooks signature: valid".
    pub findings: Vec<String>,
    pub valid: bool,
}

/// Verifies a received webhook (integrators' tool): the Standard Webhooks headers, and each
/// dialect's own signature when present (`X-iZettle-Signature`, Metro's `x-signature`). `headers` are (lowercase name, value) pairs; `secret` is
/// the subscription's signingKey or its `whsec_` form; `now` and `tolerance` bound the
/// timestamp (replay protection).
pub fn verify_webhook(
    secret: &str,
    headers: &[(String, String)],
    body: &[u8],
    now: i64,
    tolerance: i64,
) -> Result<Verification, String> {
    let key = key_bytes(secret)?;
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.trim());
    let mut findings = Vec::new();
    let mut valid = true;
    match (header("webhook-id"), header("webhook-timestamp"), header("webhook-signature")) {
        (Some(id), Some(ts), Some(sig)) => {
            let ts: i64 = ts.parse().map_err(|_| format!("webhook-timestamp {ts:?} is not a number"))?;
            if (now - ts).abs() > tolerance {
                valid = false;
                findings.push(format!(
                    "webhook-timestamp {ts} is {}s away from now (tolerance {tolerance}s): invalid",
                    now - ts
                ));
            }
            if verify_standard_webhooks(&key, id, ts, body, sig) {
                findings.push("Standard Webhooks signature: valid".into());
            } else {
                valid = false;
                findings.push("Standard Webhooks signature: INVALID".into());
            }
        }
        (None, None, None) => {}
        _ => {
            valid = false;
            findings.push(
                "Standard Webhooks headers incomplete: need webhook-id, webhook-timestamp and webhook-signature".into(),
            );
        }
    }
    if let Some(sig) = header("x-izettle-signature") {
        let envelope: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("the body is not a Zettle envelope (JSON): {e}"))?;
        let (Some(timestamp), Some(payload)) = (envelope["timestamp"].as_str(), envelope["payload"].as_str()) else {
            return Err("the body lacks the Zettle envelope's timestamp and payload".into());
        };
        let ok = verify_hex(&key, &[timestamp.as_bytes(), b".", payload.as_bytes()], sig);
        valid &= ok;
        findings.push(format!("X-iZettle-Signature: {}", if ok { "valid" } else { "INVALID" }));
    }
    if let Some(sig) = header("x-signature") {
        // Metro deliveries: over x-timestamp + "." + the body's exact bytes.
        let Some(timestamp) = header("x-timestamp") else {
            return Err("x-signature needs the x-timestamp header it was made with".into());
        };
        let ok = verify_hex(&key, &[timestamp.as_bytes(), b".", body], sig);
        valid &= ok;
        findings.push(format!("Metro x-signature: {}", if ok { "valid" } else { "INVALID" }));
    }
    if findings.is_empty() {
        return Err("no signature headers found (webhook-signature, x-izettle-signature or x-signature)".into());
    }
    Ok(Verification { findings, valid })
}

#[cfg(test)]
mod verify_tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    #[test]
    fn verifies_both_signatures_and_catches_tampering() {
        let key = generate_signing_key();
        let body = br#"{"timestamp":"2026-11-23T18:00:00Z","payload":"{\"a\":1}"}"#;
        let sw = standard_webhooks_signature(key.as_bytes(), "msg_1", 1_800_000_000, body);
        let zettle = crate::dialect::zettle::signature(&key, "2026-11-23T18:00:00Z", "{\"a\":1}");
        let h = headers(&[
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", "1800000000"),
            ("webhook-signature", &sw),
            ("x-izettle-signature", &zettle),
        ]);
        let ok = verify_webhook(&key, &h, body, 1_800_000_010, 300).unwrap();
        assert!(ok.valid, "{:?}", ok.findings);
        assert_eq!(ok.findings.len(), 2);
        assert!(verify_webhook(&standard_webhooks_secret(&key), &h, body, 1_800_000_010, 300).unwrap().valid);

        let tampered = br#"{"timestamp":"2026-11-23T18:00:00Z","payload":"{\"a\":2}"}"#;
        let bad = verify_webhook(&key, &h, tampered, 1_800_000_010, 300).unwrap();
        assert!(!bad.valid);
        assert!(bad.findings.iter().all(|f| f.contains("INVALID")), "{:?}", bad.findings);
        assert!(!verify_webhook(&key, &h, body, 1_800_001_000, 300).unwrap().valid, "stale timestamp");
        assert!(verify_webhook(&key, &[], body, 0, 300).is_err());
    }

    #[test]
    fn verifies_metros_signature_over_the_exact_body() {
        let key = generate_signing_key();
        let body = br#"{"messageId":"m","event":"order_created","payload":{},"emittedAt":"2026-11-23T18:00:00Z"}"#;
        let sig = crate::dialect::metro::signature(&key, "1800000000", body);
        let h = headers(&[("x-timestamp", "1800000000"), ("x-signature", &sig)]);
        let ok = verify_webhook(&key, &h, body, 1_800_000_010, 300).unwrap();
        assert!(ok.valid, "{:?}", ok.findings);
        assert_eq!(ok.findings, vec!["Metro x-signature: valid".to_owned()]);
        let mut with_newline = body.to_vec();
        with_newline.push(b'\n');
        assert!(!verify_webhook(&key, &h, &with_newline, 1_800_000_010, 300).unwrap().valid);
        let without_timestamp = headers(&[("x-signature", &sig)]);
        assert!(verify_webhook(&key, &without_timestamp, body, 1_800_000_010, 300).is_err());
    }
}
