//! A publish as every route and publish source takes it: `{eventName, payload, messageId?,
//! orderingKey?}` and, from a publish source (an SQS message, an EventBridge event, an entry of
//! the batch route), the `organizationUuid` it is for. Parsed once; the payload stays raw bytes.

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::Value;

use super::PublishRequest;
use crate::dialect::catalog;
use crate::domain::delivery_options::MAX_ORDERING_KEY_LEN;
use crate::domain::OrganizationId;
use crate::json::{parse_raw_object, reject_unknown_fields};
use crate::{Error, Result};

const MAX_MESSAGE_ID_LEN: usize = 128;

/// A `messageId` field: 1 to 128 printable ASCII characters.
pub(crate) fn message_id(fields: &serde_json::Map<String, Value>, required: bool) -> Result<Option<String>> {
    match fields.get("messageId") {
        None | Some(Value::Null) if !required => Ok(None),
        None | Some(Value::Null) => Err(Error::bad_request("messageId", "messageId is required")),
        Some(Value::String(id))
            if !id.is_empty() && id.len() <= MAX_MESSAGE_ID_LEN && id.chars().all(|c| c.is_ascii_graphic()) =>
        {
            Ok(Some(id.clone()))
        }
        Some(_) => Err(Error::bad_request(
            "messageId",
            format!("messageId must be a string of 1 to {MAX_MESSAGE_ID_LEN} printable ASCII characters"),
        )),
    }
}

/// An `orderingKey` field: 1 to 128 characters, or none.
fn ordering_key(fields: &serde_json::Map<String, Value>) -> Result<Option<String>> {
    match fields.get("orderingKey") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(key)) if !key.is_empty() && key.chars().count() <= MAX_ORDERING_KEY_LEN => {
            Ok(Some(key.clone()))
        }
        Some(_) => Err(Error::bad_request(
            "orderingKey",
            format!("orderingKey must be a string of 1 to {MAX_ORDERING_KEY_LEN} characters"),
        )),
    }
}

/// The fields of a publish as the publish route takes them (`eventName`, `payload`, `messageId`,
/// `orderingKey`) plus `extra`, which the caller reads itself; unknown fields are refused.
pub(crate) struct PublishFields<'a> {
    pub event: &'static crate::domain::EventDefinition,
    pub payload: &'a str,
    pub message_id: Option<String>,
    pub ordering_key: Option<String>,
    /// The `extra` fields present, parsed.
    pub extra: serde_json::Map<String, Value>,
}

pub(crate) fn publish_fields<'a>(raw: &BTreeMap<String, &'a RawValue>, extra: &[&str]) -> Result<PublishFields<'a>> {
    let allowed: Vec<&str> =
        ["eventName", "payload", "messageId", "orderingKey"].iter().chain(extra).copied().collect();
    reject_unknown_fields(raw.keys(), &allowed)?;
    let mut fields: serde_json::Map<String, Value> = raw
        .iter()
        .filter(|(name, _)| name.as_str() != "payload")
        .map(|(name, value)| {
            // A value serde_json cannot represent (a number like 1e999999) is refused, never dropped.
            let parsed = serde_json::from_str(value.get()).map_err(|_| Error::BadRequest {
                field: Some(name.clone()),
                message: format!("{name} must be a string"),
            })?;
            Ok((name.clone(), parsed))
        })
        .collect::<Result<_>>()?;
    let event_name = match fields.get("eventName") {
        Some(Value::String(name)) => name.as_str(),
        None | Some(Value::Null) => return Err(Error::bad_request("eventName", "eventName is required")),
        Some(_) => return Err(Error::bad_request("eventName", "eventName must be a string")),
    };
    let event = catalog::find(event_name).ok_or_else(|| {
        let known: Vec<_> = catalog::all().map(|e| e.name).collect();
        Error::bad_request(
            "eventName",
            format!("event {event_name:?} is not supported; supported events: {}", known.join(", ")),
        )
    })?;
    let payload = match raw.get("payload") {
        Some(payload) if payload.get() != "null" => payload.get(),
        _ => return Err(Error::bad_request("payload", "payload is required (the event as JSON)")),
    };
    let message_id = message_id(&fields, false)?;
    let ordering_key = ordering_key(&fields)?;
    fields.retain(|name, _| extra.contains(&name.as_str()));
    Ok(PublishFields { event, payload, message_id, ordering_key, extra: fields })
}

/// A record of a publish source — an SQS message's body, an entry of the batch route — as a
/// publish: `{organizationUuid, eventName, payload, messageId?, orderingKey?}`, or an
/// EventBridge event (as a rule's SQS target receives it) whose `detail` is that object.
/// Without a messageId the EventBridge event's `id`, else `default_message_id` (the SQS
/// message's id) stands in, so a record received twice is published once.
pub(crate) fn source_record(body: &[u8], default_message_id: Option<&str>) -> Result<PublishRequest> {
    let mut raw = parse_raw_object(body, "a publish record")?;
    let mut default_message_id = default_message_id.map(str::to_owned);
    if raw.contains_key("detail-type") && raw.contains_key("detail") {
        // An EventBridge event: its `id` is unique per event (a retried PutEvents entry gets a
        // new one unless the producer names a messageId).
        if let Some(Ok(Value::String(id))) = raw.get("id").map(|id| serde_json::from_str(id.get())) {
            default_message_id = Some(id);
        }
        let detail = raw["detail"];
        raw = serde_json::from_str(detail.get()).map_err(|_| {
            Error::bad_request("detail", "an EventBridge event's detail must be a publish record (a JSON object)")
        })?;
    }
    let fields = publish_fields(&raw, &["organizationUuid"])?;
    let org = match fields.extra.get("organizationUuid") {
        Some(Value::String(org)) => org
            .parse::<OrganizationId>()
            .map_err(|_| Error::bad_request("organizationUuid", "organizationUuid must be an organization's UUID"))?,
        None | Some(Value::Null) => return Err(Error::bad_request("organizationUuid", "organizationUuid is required")),
        Some(_) => return Err(Error::bad_request("organizationUuid", "organizationUuid must be a string")),
    };
    Ok(PublishRequest {
        org,
        event: fields.event,
        payload: fields.payload.to_owned(),
        message_id: fields.message_id.or(default_message_id),
        ordering_key: fields.ordering_key,
    })
}
