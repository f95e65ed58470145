//! The Metro Markets delivery: `{messageId, event, payload, emittedAt}` with the event JSON
//! itself in `payload`, signed in `x-signature` over `x-timestamp + "." + body`, the seller in
//! `x-client`.

use super::events::EVENTS;
use crate::dialect::Envelope;
use crate::domain::{utc_timestamp, Message, Subscription};
use crate::signing::{hex, hmac_parts};

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct MetroEnvelope<'a> {
    message_id: &'a str,
    event: &'a str,
    payload: &'a serde_json::value::RawValue,
    emitted_at: String,
}

pub fn envelope(subscription: &Subscription, message: &Message<'_>, signing_key: &str) -> Envelope {
    // Published payloads are validated JSON; anything else travels as a JSON string.
    let raw = serde_json::value::RawValue::from_string(message.payload.to_owned())
        .unwrap_or_else(|_| serde_json::value::to_raw_value(message.payload).expect("a string always serializes"));
    // The event as the subscription spells it (Metro clients use both spellings of some).
    let event = subscription
        .event_names
        .first()
        .filter(|chosen| EVENTS.iter().any(|e| e.is_named(message.event_name) && e.is_named(chosen)))
        .map_or(message.event_name, String::as_str);
    let envelope = MetroEnvelope {
        message_id: message.message_id,
        event,
        payload: &raw,
        emitted_at: utc_timestamp(message.published_at),
    };
    let body = serde_json::to_vec(&envelope).expect("the envelope always serializes");
    let unix = message.timestamp.unix_timestamp().to_string();
    Envelope {
        headers: vec![
            ("x-client", subscription.organization.to_string()),
            ("x-signature", signature(signing_key, &unix, &body)),
            ("x-timestamp", unix),
        ],
        body,
    }
}

/// Metro Markets' `x-signature`: lowercase hex HMAC-SHA256 keyed by the signing key over
/// `x-timestamp + "." + body` (the exact body bytes).
pub fn signature(signing_key: &str, timestamp: &str, body: &[u8]) -> String {
    hex(&hmac_parts(signing_key.as_bytes(), &[timestamp.as_bytes(), b".", body]))
}
