//! The store on one DynamoDB table.
//!
//! | item | PK | SK | GSI1PK | GSI1SK |
//! | --- | --- | --- | --- | --- |
//! | subscription | `ORG#<org>` | `SUB#<id>` | | |
//! | fan-out entry (one per event, `*` for all events) | `ORG#<org>` | `IDX#<event>#<id>` | `ORG#<org>#EVT#<event>` | `<created>#<id>` |
//! | API key | `KEY#<sha256>` | `KEY` | `KEYS` | `<org>#<created>#<id>` |
//! | published message (idempotency, replay) | `ORG#<org>` | `PUB#<message id>` | | |
//! | last alert of a subscription | `ORG#<org>` | `ALERT#<id>` | | |
//! | request count (rate limit) | `RATE#<client>` | `<window start>` | | |
//! | store group member | `GROUP#<name>` | `ORG#<org>` | `GROUPS` | `<name>#<org>` |
//! | delivery attempt | `ORG#<org>#SUB#<id>#ATT` | `<at>#<message id>#<attempt>` | | |
//!
//! Fan-out entries carry a full copy of the subscription, so fan-out is a Query on GSI1 (one
//! for the event, one for `*`, issued together), never a Scan. A subscription and its entries
//! are written in one transaction whose condition refuses duplicates. Message, alert and
//! attempt items carry `expires_at` (epoch seconds), the table's TTL attribute.

use std::collections::HashMap;
use std::str::FromStr;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, PutRequest, TransactWriteItem, Update, WriteRequest};
use aws_sdk_dynamodb::Client;
use time::OffsetDateTime;
use uuid::Uuid;

use super::sdk_error;
use crate::delivery::ATTEMPT_RETENTION;
use crate::domain::{ApiKey, OrganizationId, Scope, Subscription, SubscriptionStatus};
use crate::domain::{AttemptRecord, PublishRecord, StoreGroup};
use crate::ports::{KeyStore, Limits, MessageLog, StoreGroups, SubscriptionStore};
use crate::{Error, Result};

/// The GSI fan-out and key listing use.
pub const GSI1: &str = "GSI1";
/// Fan-out key of all-events subscriptions.
const ALL_EVENTS: &str = "*";
/// A published message whose jobs may not be on the queue yet (absent once they are).
const PUBLISH_PENDING: &str = "pending";

type Item = HashMap<String, AttributeValue>;

pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore { client, table: table.into() }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The first half of a publish on AWS: claims the message id with a record in state
    /// `pending`. Returns the existing record instead when one younger than `window` has its
    /// jobs queued; a `pending` record (its publish never finished) is taken over.
    pub async fn claim_publish(&self, record: &PublishRecord, window: time::Duration) -> Result<Option<PublishRecord>> {
        let pk = org_pk(record.organization);
        let sk = format!("PUB#{}", record.message_id);
        let item = HashMap::from([
            ("PK".to_owned(), s(&pk)),
            ("SK".to_owned(), s(&sk)),
            ("event_name".to_owned(), s(&record.event_name)),
            ("payload".to_owned(), s(&record.payload)),
            ("subscriptions".to_owned(), n(record.subscriptions)),
            ("created_at".to_owned(), n(nanos(record.created_at))),
            ("retain_until".to_owned(), n(nanos(record.expires_at))),
            ("expires_at".to_owned(), n(record.expires_at.unix_timestamp())),
            ("publish_state".to_owned(), s(PUBLISH_PENDING)),
        ]);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK) OR created_at <= :cutoff OR publish_state = :pending")
            .expression_attribute_values(":cutoff", n(nanos(record.created_at - window)))
            .expression_attribute_values(":pending", s(PUBLISH_PENDING))
            .send()
            .await;
        match result {
            Ok(_) => Ok(None),
            Err(err) if matches!(err.as_service_error(), Some(PutItemError::ConditionalCheckFailedException(_))) => {
                let existing =
                    self.get_item(pk, sk).await?.ok_or_else(|| Error::internal("publish record vanished"))?;
                Ok(Some(publish_from(record.organization, &record.message_id, &existing)?))
            }
            Err(err) => Err(sdk_error("DynamoDB PutItem", err)),
        }
    }

    /// The second half: the message's jobs are on the queue, so a repeat is a repeat from now on.
    pub async fn mark_publish_queued(&self, org: OrganizationId, message_id: &str) -> Result<()> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("PK", s(org_pk(org)))
            .key("SK", s(format!("PUB#{message_id}")))
            .update_expression("REMOVE publish_state")
            .send()
            .await
            .map_err(|e| sdk_error("DynamoDB UpdateItem", e))?;
        Ok(())
    }

    async fn query_all(
        &self,
        index: Option<&str>,
        key_condition: &str,
        values: &[(&str, AttributeValue)],
        filter: Option<&str>,
    ) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(key_condition)
                .set_index_name(index.map(str::to_owned))
                .set_filter_expression(filter.map(str::to_owned))
                .set_exclusive_start_key(start.take());
            for (name, value) in values {
                query = query.expression_attribute_values(*name, value.clone());
            }
            let page = query.send().await.map_err(|e| sdk_error("DynamoDB Query", e))?;
            items.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }

    async fn get_item(&self, pk: String, sk: String) -> Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("PK", s(pk))
            .key("SK", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("DynamoDB GetItem", e))?;
        Ok(out.item)
    }

    fn put(&self, item: Item, condition: Option<&str>) -> Result<TransactWriteItem> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .set_condition_expression(condition.map(str::to_owned))
            .build()
            .map_err(Error::internal)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn delete(&self, pk: String, sk: String, condition: Option<&str>) -> Result<TransactWriteItem> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .key("PK", s(pk))
            .key("SK", s(sk))
            .set_condition_expression(condition.map(str::to_owned))
            .build()
            .map_err(Error::internal)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// Runs a transaction; `Ok(false)` when the first item's condition failed.
    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<bool> {
        match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(true),
            Err(err) => {
                if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) = err.as_service_error() {
                    let first = cancelled.cancellation_reasons().first().and_then(|r| r.code());
                    if first == Some("ConditionalCheckFailed") {
                        return Ok(false);
                    }
                }
                Err(sdk_error("DynamoDB TransactWriteItems", err))
            }
        }
    }

    async fn batch_put(&self, items: Vec<Item>) -> Result<()> {
        for chunk in items.chunks(25) {
            let mut requests: Vec<WriteRequest> = chunk
                .iter()
                .map(|item| {
                    let put = PutRequest::builder().set_item(Some(item.clone())).build().map_err(Error::internal)?;
                    Ok(WriteRequest::builder().put_request(put).build())
                })
                .collect::<Result<_>>()?;
            // Unprocessed items are retried with backoff; the SDK already retries throttling.
            for round in 0..8u32 {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(|e| sdk_error("DynamoDB BatchWriteItem", e))?;
                requests = out.unprocessed_items.and_then(|mut m| m.remove(&self.table)).unwrap_or_default();
                if requests.is_empty() {
                    break;
                }
                if round == 7 {
                    return Err(Error::internal("DynamoDB BatchWriteItem left items unprocessed"));
                }
                tokio::time::sleep(std::time::Duration::from_millis(25 << round)).await;
            }
        }
        Ok(())
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn nanos(t: OffsetDateTime) -> i64 {
    t.unix_timestamp_nanos() as i64
}

/// Zero-padded so that string order is time order.
fn sortable(t: OffsetDateTime) -> String {
    format!("{:020}", nanos(t))
}

fn org_pk(org: OrganizationId) -> String {
    format!("ORG#{org}")
}

fn get_s(item: &Item, name: &str) -> Result<String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v.clone()),
        _ => Err(Error::internal(format!("stored item lacks string attribute {name}"))),
    }
}

fn get_n<T: FromStr>(item: &Item, name: &str) -> Result<T> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => {
            v.parse().map_err(|_| Error::internal(format!("attribute {name} is not a number")))
        }
        _ => Err(Error::internal(format!("stored item lacks number attribute {name}"))),
    }
}

fn get_opt_n<T: FromStr>(item: &Item, name: &str) -> Result<Option<T>> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(_) => get_n(item, name).map(Some),
    }
}

fn get_opt_s(item: &Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    }
}

fn get_list(item: &Item, name: &str) -> Result<Vec<String>> {
    match item.get(name) {
        Some(AttributeValue::L(values)) => values
            .iter()
            .map(|v| v.as_s().cloned().map_err(|_| Error::internal(format!("{name} holds a non-string"))))
            .collect(),
        _ => Err(Error::internal(format!("stored item lacks list attribute {name}"))),
    }
}

fn time_from(n: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(n as i128).map_err(Error::internal)
}

fn corrupt(what: &str, err: impl std::fmt::Display) -> Error {
    Error::internal(format!("stored {what} is unreadable: {err}"))
}

fn subscription_attributes(sub: &Subscription) -> Item {
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
    item
}

fn subscription_item(sub: &Subscription) -> Item {
    let mut item = subscription_attributes(sub);
    item.insert("PK".into(), s(org_pk(sub.organization)));
    item.insert("SK".into(), s(format!("SUB#{}", sub.id)));
    item
}

fn index_keys(event_names: &[String]) -> Vec<&str> {
    if event_names.is_empty() {
        vec![ALL_EVENTS]
    } else {
        event_names.iter().map(String::as_str).collect()
    }
}

fn index_sk(event: &str, id: Uuid) -> String {
    format!("IDX#{event}#{id}")
}

fn index_item(sub: &Subscription, event: &str) -> Item {
    let mut item = subscription_attributes(sub);
    item.insert("PK".into(), s(org_pk(sub.organization)));
    item.insert("SK".into(), s(index_sk(event, sub.id)));
    item.insert("GSI1PK".into(), s(format!("ORG#{}#EVT#{event}", sub.organization)));
    item.insert("GSI1SK".into(), s(format!("{}#{}", sortable(sub.created_at), sub.id)));
    item
}

fn subscription_from(item: &Item) -> Result<Subscription> {
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
    })
}

fn api_key_item(key: &ApiKey) -> Item {
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

fn api_key_from(item: &Item) -> Result<ApiKey> {
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

fn publish_from(org: OrganizationId, message_id: &str, item: &Item) -> Result<PublishRecord> {
    Ok(PublishRecord {
        organization: org,
        message_id: message_id.to_owned(),
        event_name: get_s(item, "event_name")?,
        payload: get_s(item, "payload")?,
        subscriptions: get_n(item, "subscriptions")?,
        created_at: time_from(get_n(item, "created_at")?)?,
        expires_at: time_from(get_n(item, "retain_until")?)?,
    })
}

fn by_creation(mut subs: Vec<Subscription>) -> Vec<Subscription> {
    subs.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    subs
}

#[async_trait]
impl SubscriptionStore for DynamoStore {
    async fn create_subscription(&self, subscription: &Subscription) -> Result<()> {
        let mut writes = vec![self.put(subscription_item(subscription), Some("attribute_not_exists(PK)"))?];
        for event in index_keys(&subscription.event_names) {
            writes.push(self.put(index_item(subscription, event), None)?);
        }
        if self.transact(writes).await? {
            Ok(())
        } else {
            Err(Error::Duplicate(format!("a subscription with uuid {} already exists", subscription.id)))
        }
    }

    async fn get_subscription(&self, org: OrganizationId, id: Uuid) -> Result<Option<Subscription>> {
        self.get_item(org_pk(org), format!("SUB#{id}")).await?.as_ref().map(subscription_from).transpose()
    }

    async fn list_subscriptions(&self, org: OrganizationId) -> Result<Vec<Subscription>> {
        let items = self
            .query_all(None, "PK = :pk AND begins_with(SK, :sk)", &[(":pk", s(org_pk(org))), (":sk", s("SUB#"))], None)
            .await?;
        Ok(by_creation(items.iter().map(subscription_from).collect::<Result<_>>()?))
    }

    async fn update_subscription(&self, subscription: &Subscription, read_version: OffsetDateTime) -> Result<bool> {
        let previous = self
            .get_subscription(subscription.organization, subscription.id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("subscription {} not found", subscription.id)))?;
        if previous.updated_at != read_version {
            return Ok(false);
        }
        let new_keys = index_keys(&subscription.event_names);
        // Written only over the version read (and so over the index entries of `previous`).
        let guarded = Put::builder()
            .table_name(&self.table)
            .set_item(Some(subscription_item(subscription)))
            .condition_expression("attribute_exists(PK) AND updated_at = :read")
            .expression_attribute_values(":read", n(nanos(read_version)))
            .build()
            .map_err(Error::internal)?;
        let mut writes = vec![TransactWriteItem::builder().put(guarded).build()];
        for event in index_keys(&previous.event_names) {
            if !new_keys.contains(&event) {
                writes.push(self.delete(org_pk(subscription.organization), index_sk(event, subscription.id), None)?);
            }
        }
        for event in new_keys {
            writes.push(self.put(index_item(subscription, event), None)?);
        }
        if self.transact(writes).await? {
            return Ok(true);
        }
        match self.get_subscription(subscription.organization, subscription.id).await? {
            Some(_) => Ok(false),
            None => Err(Error::NotFound(format!("subscription {} not found", subscription.id))),
        }
    }

    async fn delete_subscription(&self, org: OrganizationId, id: Uuid) -> Result<bool> {
        let Some(previous) = self.get_subscription(org, id).await? else { return Ok(false) };
        let mut writes = vec![self.delete(org_pk(org), format!("SUB#{id}"), Some("attribute_exists(PK)"))?];
        for event in index_keys(&previous.event_names) {
            writes.push(self.delete(org_pk(org), index_sk(event, id), None)?);
        }
        self.transact(writes).await
    }

    async fn subscriptions_for_event(&self, org: OrganizationId, event_name: &str) -> Result<Vec<Subscription>> {
        let query = |event: &str| {
            let key = s(format!("ORG#{org}#EVT#{event}"));
            async move { self.query_all(Some(GSI1), "GSI1PK = :k", &[(":k", key)], None).await }
        };
        let (explicit, all) = futures::future::try_join(query(event_name), query(ALL_EVENTS)).await?;
        let subs = explicit.iter().chain(all.iter()).map(subscription_from).collect::<Result<Vec<_>>>()?;
        Ok(by_creation(subs))
    }

    async fn set_subscription_health(&self, subscription: &Subscription) -> Result<()> {
        let org = subscription.organization;
        let failing_since = subscription.failing_since.map(|t| n(nanos(t))).unwrap_or(AttributeValue::Null(true));
        // The fan-out entries carry a copy of the status, so they change with the subscription.
        let update = |sk: String, condition: Option<&str>| -> Result<TransactWriteItem> {
            let update = Update::builder()
                .table_name(&self.table)
                .key("PK", s(org_pk(org)))
                .key("SK", s(sk))
                .update_expression("SET #status = :status, failing_since = :failing")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":status", s(subscription.status.as_str()))
                .expression_attribute_values(":failing", failing_since.clone())
                .expression_attribute_values(":inactive", s(SubscriptionStatus::Inactive.as_str()))
                .set_condition_expression(condition.map(str::to_owned))
                .build()
                .map_err(Error::internal)?;
            Ok(TransactWriteItem::builder().update(update).build())
        };
        // An owner's switch-off wins over health.
        let condition = Some("attribute_exists(PK) AND #status <> :inactive");
        let mut writes = vec![update(format!("SUB#{}", subscription.id), condition)?];
        for event in index_keys(&subscription.event_names) {
            writes.push(update(index_sk(event, subscription.id), condition)?);
        }
        if self.transact(writes).await? {
            return Ok(());
        }
        match self.get_subscription(org, subscription.id).await? {
            Some(_) => Ok(()),
            None => Err(Error::NotFound(format!("subscription {} not found", subscription.id))),
        }
    }
}

#[async_trait]
impl KeyStore for DynamoStore {
    async fn put_api_key(&self, key: &ApiKey) -> Result<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(api_key_item(key)))
            .send()
            .await
            .map_err(|e| sdk_error("DynamoDB PutItem", e))?;
        Ok(())
    }

    async fn find_api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>> {
        self.get_item(format!("KEY#{hash}"), "KEY".into()).await?.as_ref().map(api_key_from).transpose()
    }

    async fn list_api_keys(&self, org: Option<OrganizationId>) -> Result<Vec<ApiKey>> {
        let items = match org {
            Some(org) => {
                self.query_all(
                    Some(GSI1),
                    "GSI1PK = :k AND begins_with(GSI1SK, :org)",
                    &[(":k", s("KEYS")), (":org", s(format!("{org}#")))],
                    None,
                )
                .await?
            }
            None => self.query_all(Some(GSI1), "GSI1PK = :k", &[(":k", s("KEYS"))], None).await?,
        };
        let mut keys = items.iter().map(api_key_from).collect::<Result<Vec<_>>>()?;
        keys.sort_by_key(|k| k.created_at);
        Ok(keys)
    }

    async fn revoke_api_key(&self, id: Uuid, at: OffsetDateTime) -> Result<bool> {
        let items = self
            .query_all(Some(GSI1), "GSI1PK = :k", &[(":k", s("KEYS")), (":id", s(id.to_string()))], Some("id = :id"))
            .await?;
        let Some(item) = items.first() else { return Ok(false) };
        self.client
            .update_item()
            .table_name(&self.table)
            .key("PK", s(get_s(item, "PK")?))
            .key("SK", s("KEY"))
            .update_expression("SET revoked_at = if_not_exists(revoked_at, :at)")
            .expression_attribute_values(":at", n(nanos(at)))
            .send()
            .await
            .map_err(|e| sdk_error("DynamoDB UpdateItem", e))?;
        Ok(true)
    }
}

#[async_trait]
impl MessageLog for DynamoStore {
    async fn get_publish(&self, org: OrganizationId, message_id: &str) -> Result<Option<PublishRecord>> {
        let Some(item) = self.get_item(org_pk(org), format!("PUB#{message_id}")).await? else { return Ok(None) };
        let record = publish_from(org, message_id, &item)?;
        // TTL deletion lags; an expired record is gone as far as callers know.
        Ok(Some(record).filter(|r| r.expires_at > OffsetDateTime::now_utc()))
    }

    async fn record_attempts(&self, attempts: &[AttemptRecord]) -> Result<()> {
        let items = attempts
            .iter()
            .map(|a| {
                let mut item = HashMap::from([
                    ("PK".to_owned(), s(format!("ORG#{}#SUB#{}#ATT", a.organization, a.subscription_id))),
                    ("SK".to_owned(), s(format!("{}#{}#{}", sortable(a.at), a.message_id, a.attempt))),
                    ("message_id".to_owned(), s(&a.message_id)),
                    ("event_name".to_owned(), s(&a.event_name)),
                    ("attempt".to_owned(), n(a.attempt)),
                    ("at".to_owned(), n(nanos(a.at))),
                    ("latency_ms".to_owned(), n(a.latency_ms)),
                    ("response_excerpt".to_owned(), s(&a.response_excerpt)),
                    ("expires_at".to_owned(), n((a.at + ATTEMPT_RETENTION).unix_timestamp())),
                ]);
                if let Some(status) = a.status {
                    item.insert("status".into(), n(status));
                }
                if let Some(error) = &a.error {
                    item.insert("error".into(), s(error));
                }
                item
            })
            .collect();
        self.batch_put(items).await
    }

    async fn recent_attempts(
        &self,
        org: OrganizationId,
        subscription_id: Uuid,
        limit: usize,
    ) -> Result<Vec<AttemptRecord>> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk")
            .expression_attribute_values(":pk", s(format!("ORG#{org}#SUB#{subscription_id}#ATT")))
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| sdk_error("DynamoDB Query", e))?;
        out.items
            .unwrap_or_default()
            .iter()
            .map(|item| {
                Ok(AttemptRecord {
                    organization: org,
                    subscription_id,
                    message_id: get_s(item, "message_id")?,
                    event_name: get_s(item, "event_name")?,
                    attempt: get_n(item, "attempt")?,
                    at: time_from(get_n(item, "at")?)?,
                    status: get_opt_n(item, "status")?,
                    latency_ms: get_n(item, "latency_ms")?,
                    response_excerpt: get_s(item, "response_excerpt")?,
                    error: get_opt_s(item, "error"),
                })
            })
            .collect()
    }
}

#[async_trait]
impl Limits for DynamoStore {
    async fn claim_alert(
        &self,
        org: OrganizationId,
        subscription_id: Uuid,
        at: OffsetDateTime,
        window: time::Duration,
    ) -> Result<bool> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("PK", s(org_pk(org)))
            .item("SK", s(format!("ALERT#{subscription_id}")))
            .item("sent_at", n(nanos(at)))
            .item("expires_at", n((at + window).unix_timestamp()))
            .condition_expression("attribute_not_exists(PK) OR sent_at <= :cutoff")
            .expression_attribute_values(":cutoff", n(nanos(at - window)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) if matches!(err.as_service_error(), Some(PutItemError::ConditionalCheckFailedException(_))) => {
                Ok(false)
            }
            Err(err) => Err(sdk_error("DynamoDB PutItem", err)),
        }
    }

    async fn count_request(&self, client: &str, window_start: i64, expires_at: OffsetDateTime) -> Result<u32> {
        // One atomic counter per client and window, shared by every Lambda instance.
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("PK", s(format!("RATE#{client}")))
            .key("SK", s(window_start.to_string()))
            .update_expression("ADD hits :one SET expires_at = :expires")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":expires", n(expires_at.unix_timestamp()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| sdk_error("DynamoDB UpdateItem", e))?;
        let attributes = out.attributes.unwrap_or_default();
        get_n(&attributes, "hits")
    }
}

#[async_trait]
impl StoreGroups for DynamoStore {
    async fn put_store_group(&self, name: &str, members: &[OrganizationId]) -> Result<()> {
        let existing = self.query_all(None, "PK = :pk", &[(":pk", s(format!("GROUP#{name}")))], None).await?;
        for item in existing {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("PK", s(get_s(&item, "PK")?))
                .key("SK", s(get_s(&item, "SK")?))
                .send()
                .await
                .map_err(|e| sdk_error("DynamoDB DeleteItem", e))?;
        }
        let items = members
            .iter()
            .map(|org| {
                HashMap::from([
                    ("PK".to_owned(), s(format!("GROUP#{name}"))),
                    ("SK".to_owned(), s(format!("ORG#{org}"))),
                    ("GSI1PK".to_owned(), s("GROUPS")),
                    ("GSI1SK".to_owned(), s(format!("{name}#{org}"))),
                    ("group".to_owned(), s(name)),
                    ("org".to_owned(), s(org.to_string())),
                ])
            })
            .collect();
        self.batch_put(items).await
    }

    async fn list_store_groups(&self) -> Result<Vec<StoreGroup>> {
        let items = self.query_all(Some(GSI1), "GSI1PK = :k", &[(":k", s("GROUPS"))], None).await?;
        let mut groups: Vec<StoreGroup> = Vec::new();
        for item in items {
            let name = get_s(&item, "group")?;
            let org = OrganizationId::from_str(&get_s(&item, "org")?).map_err(|e| corrupt("store group member", e))?;
            match groups.last_mut() {
                Some(group) if group.name == name => group.members.push(org),
                _ => groups.push(StoreGroup { name, members: vec![org] }),
            }
        }
        for group in &mut groups {
            group.members.sort();
        }
        Ok(groups)
    }
}
