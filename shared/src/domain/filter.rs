//! A subscription's filter: an EventBridge event pattern, matched at fan-out against the message
//! as one JSON document, `{"eventName", "messageId", "orderingKey"?, "payload"}`. A message it
//! does not match sends no job to that subscription: no request, no attempt, no queue call.
//!
//! Why EventBridge's patterns: teams that `sam deploy` write them already, they are data (not
//! a program: nothing to run away, evaluation linear in the message), and one automaton matches
//! every pattern of an organization at once (Quamina), whatever their number. What they offer:
//! exact values, `prefix`, `suffix`, `wildcard`, `equals-ignore-case`, `anything-but`,
//! `numeric` ranges, `exists`, `cidr`, `regexp` (I-Regexp); fields AND, a field's values OR.
//! EventBridge's `$or` is not among them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The longest filter kept, as JSON text.
pub const MAX_FILTER_BYTES: usize = 4 * 1024;

/// A checked event pattern, kept as its JSON text: every read of a subscription (each publish's
/// fan-out, each delivery) carries it, and only the matcher and the API need it parsed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventFilter(Box<serde_json::value::RawValue>);

impl PartialEq for EventFilter {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl Eq for EventFilter {}

impl EventFilter {
    /// A filter from its JSON (an object, or a string holding one, as a text field sends it),
    /// checked as the matcher will take it; the error says where it is wrong.
    pub fn parse(given: &Value) -> Result<EventFilter, String> {
        let pattern = match given {
            Value::String(text) => serde_json::from_str::<Value>(text)
                .map_err(|e| format!("is not JSON: {e} (line {}, column {})", e.line(), e.column()))?,
            other => other.clone(),
        };
        if !pattern.is_object() || pattern.as_object().is_some_and(|o| o.is_empty()) {
            return Err("must be a JSON object naming at least one field, such as {\"payload\": {\"amount\": [{\"numeric\": [\">\", 100]}]}}".into());
        }
        let text = pattern.to_string();
        if text.len() > MAX_FILTER_BYTES {
            return Err(format!("is {} bytes; a filter is at most {MAX_FILTER_BYTES}", text.len()));
        }
        let mut check = quamina::Quamina::<u8>::new();
        check.add_pattern(0, &text).map_err(|e| format!("{e}"))?;
        let raw = serde_json::value::RawValue::from_string(text).map_err(|e| format!("is not JSON: {e}"))?;
        Ok(EventFilter(raw))
    }

    /// The pattern as JSON text (what the matcher takes).
    pub fn text(&self) -> &str {
        self.0.get()
    }

    /// The pattern as a JSON value (what the API answers).
    pub fn pattern(&self) -> Value {
        serde_json::from_str(self.0.get()).unwrap_or_default()
    }
}

/// The document a filter is matched against: the message's event name, id and ordering key,
/// and its payload as published.
pub fn document(event_name: &str, message_id: &str, ordering_key: Option<&str>, payload: &str) -> String {
    let quoted = |text: &str| Value::String(text.to_owned()).to_string();
    let key = ordering_key.map(|k| format!(",\"orderingKey\":{}", quoted(k))).unwrap_or_default();
    format!("{{\"eventName\":{},\"messageId\":{}{key},\"payload\":{payload}}}", quoted(event_name), quoted(message_id))
}

/// Whether `filter` matches the message `document` (see [`document`]): what the preview and a
/// single subscription use; fan-out matches an organization's filters together.
pub fn matches(filter: &EventFilter, document: &str) -> bool {
    let mut matcher = quamina::Quamina::<u8>::new();
    matcher.add_pattern(0, filter.text()).is_ok()
        && matcher.matches_for_event(document.as_bytes()).is_ok_and(|found| !found.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filter(pattern: Value) -> EventFilter {
        EventFilter::parse(&pattern).unwrap()
    }

    #[test]
    fn patterns_match_the_payload_the_event_name_and_the_ordering_key() {
        let over_100 = filter(json!({"payload": {"amount": [{"numeric": [">", 100]}]}}));
        let doc = |amount: u32| {
            document("PurchaseCreated", "m-1", None, &format!(r#"{{"amount":{amount},"store":"north-1"}}"#))
        };
        assert!(matches(&over_100, &doc(101)));
        assert!(!matches(&over_100, &doc(100)));
        let store = filter(json!({"eventName": ["PurchaseCreated"], "payload": {"store": [{"prefix": "north-"}]}}));
        assert!(matches(&store, &doc(1)));
        assert!(!matches(&store, &document("ProductCreated", "m", None, r#"{"store":"north-1"}"#)));
        let keyed = filter(json!({"orderingKey": [{"exists": true}]}));
        assert!(matches(&keyed, &document("E", "m", Some("k\"1"), "{}")), "quoted in the document");
        assert!(!matches(&keyed, &document("E", "m", None, "{}")));
        let not_test = filter(json!({"payload": {"kind": [{"anything-but": ["test"]}]}}));
        assert!(!matches(&not_test, &document("E", "m", None, r#"{"kind":"test"}"#)));
        assert!(matches(&not_test, &document("E", "m", None, r#"{"kind":"live"}"#)));
    }

    #[test]
    fn a_bad_filter_says_what_and_where() {
        let err = EventFilter::parse(&json!("{\"payload\": {\"amount\": [1,]}}")).unwrap_err();
        assert!(err.contains("line 1, column"), "{err}");
        let err = EventFilter::parse(&json!({"payload": {"amount": 100}})).unwrap_err();
        assert!(!err.is_empty(), "a value that is not an array");
        assert!(EventFilter::parse(&json!({})).unwrap_err().contains("at least one field"));
        assert!(EventFilter::parse(&json!([1])).unwrap_err().contains("object"));
        assert!(EventFilter::parse(&json!({"a": [{"numeric": ["~", 1]}]})).is_err());
        let huge = json!({"payload": {"id": (0..2_000).map(|n| n.to_string()).collect::<Vec<_>>()}});
        assert!(EventFilter::parse(&huge).unwrap_err().contains("at most"));
        // A string holding an object is the same filter as the object.
        let given = json!({"payload": {"amount": [{"numeric": [">", 100]}]}});
        assert_eq!(EventFilter::parse(&Value::String(given.to_string())).unwrap(), filter(given));
    }
}
