//! The Lagerkoll delivery: the executed body exactly as sent, the webhook and its feature in
//! `x-lagerkoll-*` headers (signed by the Standard Webhooks headers alone).

use crate::dialect::Envelope;
use crate::domain::{Message, Subscription};

/// Lagerkoll has no signature of its own: the key is not used.
pub fn envelope(subscription: &Subscription, message: &Message<'_>, _signing_key: &str) -> Envelope {
    let (feature_id, feature_method) = split_feature(message.event_name);
    Envelope {
        headers: vec![
            ("x-lagerkoll-guid", subscription.id.to_string()),
            ("x-lagerkoll-feature-id", feature_id.to_owned()),
            ("x-lagerkoll-feature-method", feature_method.to_owned()),
        ],
        body: message.payload.as_bytes().to_vec(),
    }
}

/// A Lagerkoll webhook's feature id and method, joined into its one event name with a control
/// character neither side can contain in practice.
pub(crate) fn feature_key(feature_id: &str, feature_method: &str) -> String {
    format!("{feature_id}{FEATURE_SEPARATOR}{feature_method}")
}

/// The (feature id, method) of a Lagerkoll event name.
pub(crate) fn split_feature(key: &str) -> (&str, &str) {
    key.split_once(FEATURE_SEPARATOR).unwrap_or((key, ""))
}

const FEATURE_SEPARATOR: char = '\u{1f}';
