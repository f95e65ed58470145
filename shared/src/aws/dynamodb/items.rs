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
        payload: get_s(item, "payload")?,
        subscriptions: get_n(item, "subscriptions")?,
        created_at: time_from(get_n(item, "created_at")?)?,
        expires_at: time_from(get_n(item, "retain_until")?)?,
        ordering_key: get_opt_s(item, "ordering_key"),
    })
}

pub(super) fn by_creation(mut subs: Vec<Subscription>) -> Vec<Subscription> {
    subs.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    subs
}
