//! The Zettle Pusher delivery: `{organizationUuid, messageUuid, eventName, messageId, payload,
//! timestamp}` with the event JSON as a string in `payload`, signed in `X-iZettle-Signature`.

use crate::dialect::Envelope;
use crate::domain::{utc_timestamp, Message, Subscription};
use crate::signing::{hex, hmac_parts};

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ZettleEnvelope<'a> {
    organization_uuid: String,
    message_uuid: String,
    event_name: &'a str,
    message_id: &'a str,
    payload: &'a str,
    timestamp: &'a str,
}

pub fn envelope(subscription: &Subscription, message: &Message<'_>, signing_key: &str) -> Envelope {
    let timestamp = utc_timestamp(message.timestamp);
    let envelope = ZettleEnvelope {
        organization_uuid: subscription.organization.to_string(),
        message_uuid: message.message_uuid.to_string(),
        event_name: message.event_name,
        message_id: message.message_id,
        payload: message.payload,
        timestamp: &timestamp,
    };
    Envelope {
        headers: vec![("x-izettle-signature", signature(signing_key, &timestamp, message.payload))],
        body: serde_json::to_vec(&envelope).expect("the envelope always serializes"),
    }
}

/// `X-iZettle-Signature`: lowercase hex HMAC-SHA256 keyed by the signing key over
/// `timestamp + "." + payload`.
pub fn signature(signing_key: &str, timestamp: &str, payload: &str) -> String {
    hex(&hmac_parts(signing_key.as_bytes(), &[timestamp.as_bytes(), b".", payload.as_bytes()]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_lowercase_hex_hmac_of_timestamp_dot_payload() {
        // The signature equals an HMAC of the joined string, and the HMAC itself matches the
        // well-known "quick brown fox" vector.
        let sig = signature("key", "2021-03-29T16:31:47.087Z", "{\"a\":1}");
        assert_eq!(sig.len(), 64);
        assert!(sig.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
        assert_eq!(sig, hex(&hmac_parts(b"key", &[b"2021-03-29T16:31:47.087Z.{\"a\":1}"])));
        assert_eq!(
            hex(&hmac_parts(b"key", &[b"The quick brown fox jumps over the lazy dog"])),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }
}
