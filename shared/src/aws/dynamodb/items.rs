//! Records as DynamoDB items and back: the attribute codecs and the key layout.

use crate::domain::{ApiKey, OrganizationId, PublishRecord, Scope, Subscription};
use crate::{Error, Result};
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;
use std::str::FromStr;
use time::OffsetDateTime;
use uuid::Uuid;

/// One item: attribute names and values.
pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Nanoseconds since the epoch, saturating past what an i64 holds (after 2262).
pub(super) fn nanos(t: OffsetDateTime) -> i64 {
    t.unix_timestamp_nanos().clamp(i64::MIN.into(), i64::MAX.into()) as i64
}

/// Zero-padded so that string order is time order.
pub(super) fn sortable(t: OffsetDateTime) -> String {
    format!("{:020}", nanos(t).max(0))
}

pub(super) fn org_pk(org: OrganizationId) -> String {
    format!("ORG#{org}")
}

pub(super) fn get_s(item: &Item, name: &str) -> Result<String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v.clone()),
        _ => Err(Error::internal(format!("stored item lacks string attribute {name}"))),
    }
}

pub(super) fn get_n<T: FromStr>(item: &Item, name: &str) -> Result<T> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => {
            v.parse().map_err(|_| Error::internal(format!("attribute {name} is not a number")))
        }
        _ => Err(Error::internal(format!("stored item lacks number attribute {name}"))),
    }
}

pub(super) fn get_opt_n<T: FromStr>(item: &Item, name: &str) -> Result<Option<T>> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(_) => get_n(item, name).map(Some),
    }
}

pub(super) fn get_opt_s(item: &Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    }
}

pub(super) fn get_list(item: &Item, name: &str) -> Result<Vec<String>> {
    match item.get(name) {
        Some(AttributeValue::L(values)) => values
            .iter()
            .map(|v| v.as_s().cloned().map_err(|_| Error::internal(format!("{name} holds a non-string"))))
            .collect(),
        _ => Err(Error::internal(format!("stored item lacks list attribute {name}"))),
    }
}

pub(super) fn time_from(n: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(n as i128).map_err(Error::internal)
}

pub(super) fn corrupt(what: &str, err: impl std::fmt::Display) -> Error {
    Error::internal(format!("stored {what} is unreadable: {err}"))
}

pub(super) fn subscription_attributes(sub: &Subscription) -> Item {
    let mut item = HashMap::from([
        ("org".to_owned(), s(sub.organization.to_string())),
        ("id".to_owned(), s(sub.id.to_string())),
        ("dialect".to_owned(), s(sub.dialect.as_str())),
        ("transport".to_owned(), s(&sub.transport)),
        ("event_names".to_owned(), AttributeValue::L(sub.event_names.iter().map(s).collect())),
        ("destination".to_owned(), s(&sub.destination)),
        ("status".to_owned(), s(sub.status.as_str())),
        ("signing_key".to_owned(), s(&sub.signing_key)),
        ("created_at".to_owned(), n(nanos(sub.created_at))),
        ("updated_at".to_owned(), n(nanos(sub.updated_at))),
        ("failing_since".to_owned(), sub.failing_since.map(|t| n(nanos(t))).unwrap_or(AttributeValue::Null(true))),
    ]);
    if let Some(slow_since) = sub.slow_since {
        item.insert("slow_since".to_owned(), n(nanos(slow_since)));
    }
    if let Some(contact) = &sub.contact_email {
        item.insert("contact_email".to_owned(), s(contact));
    }
    if !sub.previous_signing_keys.is_empty() {
        let keys = serde_json::to_string(&sub.previous_signing_keys).expect("keys always serialize");
        item.insert("previous_signing_keys".to_owned(), s(keys));
    }
    if !sub.delivery.is_default() {
        let options = serde_json::to_string(&sub.delivery).expect("options always serialize");
        item.insert("delivery".to_owned(), s(options));
    }
    item
}

pub(super) fn subscription_item(sub: &Subscription) -> Item {
    let mut item = subscription_attributes(sub);
    item.insert("PK".into(), s(org_pk(sub.organization)));
    item.insert("SK".into(), s(format!("SUB#{}", sub.id)));
    item
}

pub(super) fn subscription_from(item: &Item) -> Result<Subscription> {
    Ok(Subscription {
        organization: OrganizationId::from_str(&get_s(item, "org")?).map_err(|e| corrupt("organization", e))?,
        id: Uuid::parse_str(&get_s(item, "id")?).map_err(|e| corrupt("subscription id", e))?,
        dialect: get_s(item, "dialect")?.parse().map_err(|e| corrupt("dialect", e))?,
        transport: get_s(item, "transport")?,
        event_names: get_list(item, "event_names")?,
        destination: get_s(item, "destination")?,
        // Absent, or empty as stored before the contact was optional: no one to tell.
        contact_email: get_opt_s(item, "contact_email").filter(|c| !c.is_empty()),
        status: get_s(item, "status")?.parse().map_err(|e| corrupt("status", e))?,
        signing_key: get_s(item, "signing_key")?,
        created_at: time_from(get_n(item, "created_at")?)?,
        updated_at: time_from(get_n(item, "updated_at")?)?,
        failing_since: get_opt_n::<i64>(item, "failing_since")?.map(time_from).transpose()?,
        slow_since: get_opt_n::<i64>(item, "slow_since")?.map(time_from).transpose()?,
        previous_signing_keys: get_opt_s(item, "previous_signing_keys")
            .map(|keys| serde_json::from_str(&keys).map_err(|e| corrupt("previous signing keys", e)))
            .transpose()?
            .unwrap_or_default(),
        delivery: get_opt_s(item, "delivery")
            .map(|options| serde_json::from_str(&options).map_err(|e| corrupt("delivery options", e)))
            .transpose()?
            .unwrap_or_default(),
    })
}

pub(super) fn api_key_item(key: &ApiKey) -> Item {
    let mut item = HashMap::from([
        ("PK".to_owned(), s(format!("KEY#{}", key.hash))),
        ("SK".to_owned(), s("KEY")),
        ("GSI1PK".to_owned(), s("KEYS")),
        ("GSI1SK".to_owned(), s(format!("{}#{}#{}", key.organization, sortable(key.created_at), key.id))),
        ("id".to_owned(), s(key.id.to_string())),
        ("hash".to_owned(), s(&key.hash)),
        ("org".to_owned(), s(key.organization.to_string())),
        ("scopes".to_owned(), AttributeValue::L(key.scopes.iter().map(|sc| s(sc.as_str())).collect())),
        ("created_at".to_owned(), n(nanos(key.created_at))),
    ]);
    if let Some(at) = key.expires_at {
        item.insert("key_expires_at".into(), n(nanos(at)));
    }
    if let Some(at) = key.revoked_at {
        item.insert("revoked_at".into(), n(nanos(at)));
    }
    if let Some(secret) = &key.client_secret {
        item.insert("client_secret".into(), s(secret));
    }
    item
}

pub(super) fn api_key_from(item: &Item) -> Result<ApiKey> {
    Ok(ApiKey {
        id: Uuid::parse_str(&get_s(item, "id")?).map_err(|e| corrupt("key id", e))?,
        hash: get_s(item, "hash")?,
        organization: OrganizationId::from_str(&get_s(item, "org")?).map_err(|e| corrupt("organization", e))?,
        scopes: get_list(item, "scopes")?
            .iter()
            .map(|sc| Scope::from_str(sc))
            .collect::<Result<_, _>>()
            .map_err(|e| corrupt("scopes", e))?,
        created_at: time_from(get_n(item, "created_at")?)?,
        expires_at: get_opt_n::<i64>(item, "key_expires_at")?.map(time_from).transpose()?,
        revoked_at: get_opt_n::<i64>(item, "revoked_at")?.map(time_from).transpose()?,
        client_secret: get_opt_s(item, "client_secret"),
    })
}

pub(super) fn publish_from(org: OrganizationId, message_id: &str, item: &Item) -> Result<PublishRecord> {
    Ok(PublishRecord {
        organization: org,
        message_id: message_id.to_owned(),
        event_name: get_s(item, "event_name")?,
        payload: payload_from(item)?,
        subscriptions: get_n(item, "subscriptions")?,
        created_at: time_from(get_n(item, "created_at")?)?,
        expires_at: time_from(get_n(item, "retain_until")?)?,
        ordering_key: get_opt_s(item, "ordering_key"),
        filtered_out: match item.get("filtered_out") {
            Some(AttributeValue::Ss(ids)) => {
                ids.iter().map(|id| id.parse().map_err(|e| corrupt("publish", e))).collect::<Result<_>>()?
            }
            _ => Vec::new(),
        },
    })
}

/// The most a stored payload may inflate to: payloads are at most 256 KiB (the API's body
/// limit), so anything larger is not one of ours.
const MAX_INFLATED_PAYLOAD: usize = 1024 * 1024;

/// A payload as stored: deflated (`payload_z`, binary) when that saves a tenth or more, else as
/// it is (`payload`). A typical 1 KB JSON event deflates to about half, which keeps the
/// message's item within one write unit (1 KB) instead of two.
pub(super) fn payload_attribute(payload: &str) -> (&'static str, AttributeValue) {
    if payload.len() >= 256 {
        let deflated = miniz_oxide::deflate::compress_to_vec(payload.as_bytes(), 6);
        if deflated.len() * 10 <= payload.len() * 9 {
            return ("payload_z", AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(deflated)));
        }
    }
    ("payload", s(payload))
}

/// The payload of an item written by [`payload_attribute`] (or before it, always `payload`).
pub(super) fn payload_from(item: &Item) -> Result<String> {
    match item.get("payload_z") {
        Some(AttributeValue::B(deflated)) => {
            let bytes = miniz_oxide::inflate::decompress_to_vec_with_limit(deflated.as_ref(), MAX_INFLATED_PAYLOAD)
                .map_err(|e| corrupt("payload", format!("{e:?}")))?;
            String::from_utf8(bytes).map_err(|e| corrupt("payload", e))
        }
        Some(_) => Err(corrupt("payload", "payload_z is not binary")),
        None => get_s(item, "payload"),
    }
}

pub(super) fn by_creation(mut subs: Vec<Subscription>) -> Vec<Subscription> {
    subs.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    subs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item_of(payload: &str) -> Item {
        let (name, value) = payload_attribute(payload);
        HashMap::from([(name.to_owned(), value)])
    }

    #[test]
    fn a_json_payload_is_stored_deflated_and_read_back_byte_for_byte() {
        let payload = serde_json::json!({"uuid": "0f1c8a6e-3c4e-11ee-be56-0242ac120002", "name": "Kaffe",
            "description": "a product description ".repeat(40), "variants": [{"name": "small"}, {"name": "large"}]})
        .to_string();
        let item = item_of(&payload);
        let Some(AttributeValue::B(deflated)) = item.get("payload_z") else { panic!("stored deflated: {item:?}") };
        assert!(deflated.as_ref().len() * 2 < payload.len(), "{} of {}", deflated.as_ref().len(), payload.len());
        assert_eq!(payload_from(&item).unwrap(), payload);
    }

    #[test]
    fn small_or_incompressible_payloads_are_stored_as_they_are() {
        for payload in [
            r#"{"n":1}"#.to_owned(),
            serde_json::json!({"random": (0..200).map(|i| ((i * 7919) % 251) as u8 as char).collect::<String>()})
                .to_string(),
        ] {
            let item = item_of(&payload);
            if item.contains_key("payload") {
                assert_eq!(payload_from(&item).unwrap(), payload);
            }
        }
        assert!(item_of(r#"{"n":1}"#).contains_key("payload"), "a small payload is kept as text");
        // Items written before payloads were deflated read as they always did.
        let old = HashMap::from([("payload".to_owned(), s("[1,2,3]"))]);
        assert_eq!(payload_from(&old).unwrap(), "[1,2,3]");
    }

    #[test]
    fn a_corrupt_deflated_payload_is_an_error_not_a_panic() {
        let bad = HashMap::from([(
            "payload_z".to_owned(),
            AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(vec![1, 2, 3])),
        )]);
        assert!(payload_from(&bad).is_err());
        let wrong_type = HashMap::from([("payload_z".to_owned(), s("text"))]);
        assert!(payload_from(&wrong_type).is_err());
    }
}
