//! The store capabilities on the one DynamoDB table.

use super::items::{
    api_key_from, api_key_item, by_creation, corrupt, get_n, get_opt_n, get_opt_s, get_s, n, nanos, org_pk,
    publish_from, s, sortable, subscription_from, subscription_item, time_from,
};
use super::{condition_failed, DynamoStore, Item, GSI1};
use crate::aws::sdk::sdk_error;
use crate::domain::retention::ATTEMPT_RETENTION;
use crate::domain::{
    ApiKey, AttemptRecord, OrganizationId, PublishRecord, StoreGroup, Subscription, SubscriptionStatus,
};
use crate::ports::{AttemptQuery, KeyStore, MessageLog, StoreGroups, SubscriptionStore};
use crate::{Error, Result};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use std::collections::HashMap;
use std::str::FromStr;
use time::OffsetDateTime;
use uuid::Uuid;

/// Items read per page, and pages at most, when attempts are filtered by outcome or event.
const ATTEMPT_PAGE_SIZE: usize = 500;
const ATTEMPT_PAGES: usize = 20;
/// The longest a delivery batch runs (Lambda's longest timeout): a batch's attempts to one
/// subscription share an item sorted by the newest, so the oldest is at most this much older.
const MAX_BATCH_SPAN: time::Duration = time::Duration::minutes(15);

#[async_trait]
impl SubscriptionStore for DynamoStore {
    async fn create_subscription(&self, subscription: &Subscription) -> Result<()> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(subscription_item(subscription)))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if condition_failed(&err) => {
                Err(Error::Duplicate(format!("a subscription with uuid {} already exists", subscription.id)))
            }
            Err(err) => Err(sdk_error("DynamoDB PutItem", err)),
        }
    }

    async fn get_subscription(&self, org: OrganizationId, id: Uuid) -> Result<Option<Subscription>> {
        self.get_item(org_pk(org), format!("SUB#{id}")).await?.as_ref().map(subscription_from).transpose()
    }

    async fn list_subscriptions(&self, org: OrganizationId) -> Result<Vec<Subscription>> {
        // Strongly consistent: a subscription just stored is in the next fan-out.
        let items = self
            .query_all(None, "PK = :pk AND begins_with(SK, :sk)", &[(":pk", s(org_pk(org))), (":sk", s("SUB#"))], None)
            .await?;
        Ok(by_creation(items.iter().map(subscription_from).collect::<Result<_>>()?))
    }

    async fn update_subscription(&self, subscription: &Subscription, read_version: OffsetDateTime) -> Result<bool> {
        // Written only over the version read.
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(subscription_item(subscription)))
            .condition_expression("attribute_exists(PK) AND updated_at = :read")
            .expression_attribute_values(":read", n(nanos(read_version)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) if condition_failed(&err) => self.exists_or_not_found(subscription).await.map(|()| false),
            Err(err) => Err(sdk_error("DynamoDB PutItem", err)),
        }
    }

    async fn delete_subscription(&self, org: OrganizationId, id: Uuid) -> Result<bool> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("PK", s(org_pk(org)))
            .key("SK", s(format!("SUB#{id}")))
            .condition_expression("attribute_exists(PK)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) if condition_failed(&err) => Ok(false),
            Err(err) => Err(sdk_error("DynamoDB DeleteItem", err)),
        }
    }

    async fn set_subscription_health(&self, subscription: &Subscription) -> Result<()> {
        let since = |at: Option<time::OffsetDateTime>| at.map(|t| n(nanos(t))).unwrap_or(AttributeValue::Null(true));
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("PK", s(org_pk(subscription.organization)))
            .key("SK", s(format!("SUB#{}", subscription.id)))
            .update_expression("SET #status = :status, failing_since = :failing, slow_since = :slow")
            // An owner's switch-off wins over health.
            .condition_expression("attribute_exists(PK) AND #status <> :inactive")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":status", s(subscription.status.as_str()))
            .expression_attribute_values(":failing", since(subscription.failing_since))
            .expression_attribute_values(":slow", since(subscription.slow_since))
            .expression_attribute_values(":inactive", s(SubscriptionStatus::Inactive.as_str()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if condition_failed(&err) => self.exists_or_not_found(subscription).await,
            Err(err) => Err(sdk_error("DynamoDB UpdateItem", err)),
        }
    }
}

impl DynamoStore {
    /// After a refused conditional write: fine if the subscription is still there.
    async fn exists_or_not_found(&self, subscription: &Subscription) -> Result<()> {
        match self.get_subscription(subscription.organization, subscription.id).await? {
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

    async fn retain_message(&self, org: OrganizationId, message_id: &str, until: OffsetDateTime) -> Result<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("PK", s(org_pk(org)))
            .key("SK", s(format!("PUB#{message_id}")))
            .update_expression("SET retain_until = :until, expires_at = :ttl")
            // Only a message still kept, and only ever later.
            .condition_expression("attribute_exists(PK) AND retain_until < :until")
            .expression_attribute_values(":until", n(nanos(until)))
            .expression_attribute_values(":ttl", n(until.unix_timestamp()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if condition_failed(&err) => Ok(()),
            Err(err) => Err(sdk_error("DynamoDB UpdateItem", err)),
        }
    }

    async fn delivery_records(
        &self,
        org: OrganizationId,
        subscription_id: Uuid,
        message_id: &str,
        consistent: bool,
        // Read whole: the claim holds a payload only when it was too large for the queue.
        _with_payload: bool,
    ) -> Result<(Option<Subscription>, Option<PublishRecord>)> {
        let (subscription_sk, message_sk) = (format!("SUB#{subscription_id}"), format!("PUB#{message_id}"));
        let key = |sk: &str| HashMap::from([("PK".to_owned(), s(org_pk(org))), ("SK".to_owned(), s(sk))]);
        let mut wanted = KeysAndAttributes::builder()
            .keys(key(&subscription_sk))
            .keys(key(&message_sk))
            .consistent_read(consistent)
            .build()
            .map_err(Error::internal)?;
        let (mut subscription, mut message) = (None, None);
        // One BatchGetItem; keys it leaves unprocessed (throttling) are asked for again.
        for round in 0..8u32 {
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, wanted)
                .send()
                .await
                .map_err(|e| sdk_error("DynamoDB BatchGetItem", e))?;
            for item in out.responses.and_then(|mut r| r.remove(&self.table)).unwrap_or_default() {
                match get_s(&item, "SK")? {
                    sk if sk == subscription_sk => subscription = Some(subscription_from(&item)?),
                    sk if sk == message_sk => message = Some(publish_from(org, message_id, &item)?),
                    _ => {}
                }
            }
            match out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)) {
                Some(rest) if !rest.keys.is_empty() && round < 7 => {
                    wanted = rest;
                    tokio::time::sleep(std::time::Duration::from_millis(25 << round)).await;
                }
                Some(rest) if !rest.keys.is_empty() => {
                    return Err(Error::internal("DynamoDB BatchGetItem left keys unprocessed"))
                }
                _ => break,
            }
        }
        // TTL deletion lags; an expired record is gone as far as callers know.
        Ok((subscription, message.filter(|r: &PublishRecord| r.expires_at > OffsetDateTime::now_utc())))
    }

    async fn record_attempts(&self, attempts: &[AttemptRecord]) -> Result<()> {
        // One item a subscription a batch: a batch's attempts to one subscription share an
        // item (deflated), so a busy subscription's attempts cost a fraction of a write unit
        // each instead of one; a lone attempt keeps the item of its own it always had.
        let mut groups: Vec<Vec<&AttemptRecord>> = Vec::new();
        for attempt in attempts {
            match groups
                .iter_mut()
                .find(|g| g[0].organization == attempt.organization && g[0].subscription_id == attempt.subscription_id)
            {
                Some(group) => group.push(attempt),
                None => groups.push(vec![attempt]),
            }
        }
        let items = groups
            .into_iter()
            .map(|group| match group.as_slice() {
                [one] => Ok(attempt_item(one)),
                many => attempt_group_item(many),
            })
            .collect::<Result<Vec<_>>>()?;
        self.batch_put(items).await
    }

    async fn attempts(
        &self,
        org: OrganizationId,
        subscription_id: Uuid,
        query: &AttemptQuery,
    ) -> Result<Vec<AttemptRecord>> {
        // Items are sorted by their newest attempt (a batch's group holds attempts up to
        // MAX_BATCH_SPAN older), so the window bounds the sort key from its start to its end
        // plus that span, and each attempt is checked against the window itself. The outcome,
        // event and message filters are applied here, page by page, as a FilterExpression
        // would (the same items are read either way), up to ATTEMPT_PAGES pages.
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let filtered = query.outcome.is_some() || query.event.is_some() || query.message_id.is_some();
        let page_size = if filtered { ATTEMPT_PAGE_SIZE.max(query.limit) } else { query.limit };
        let from = sortable(query.since.unwrap_or(OffsetDateTime::UNIX_EPOCH));
        let to = query.until.map_or_else(|| "9".repeat(20), |until| sortable(until + MAX_BATCH_SPAN));
        let mut out: Vec<AttemptRecord> = Vec::new();
        let mut start = None;
        for _ in 0..ATTEMPT_PAGES {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("PK = :pk AND SK BETWEEN :from AND :to")
                .expression_attribute_values(":pk", s(attempts_pk(org, subscription_id)))
                .expression_attribute_values(":from", s(from.clone()))
                .expression_attribute_values(":to", s(to.clone()))
                .scan_index_forward(false)
                .limit(i32::try_from(page_size).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error("DynamoDB Query", e))?;
            let mut oldest_item_newest = None;
            for item in page.items.unwrap_or_default() {
                let attempts = attempts_of(org, subscription_id, &item)?;
                oldest_item_newest = attempts.iter().map(|a| a.at).max().or(oldest_item_newest);
                out.extend(attempts.into_iter().filter(|a| {
                    query.since.is_none_or(|since| a.at >= since)
                        && query.until.is_none_or(|until| a.at < until)
                        && query.selects(a)
                }));
            }
            out.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| b.message_id.cmp(&a.message_id)));
            start = page.last_evaluated_key;
            // Done once `limit` were found newer than anything the next items can hold.
            let enough =
                out.len() >= query.limit && oldest_item_newest.is_some_and(|newest| newest < out[query.limit - 1].at);
            if enough || start.is_none() {
                break;
            }
        }
        out.truncate(query.limit);
        Ok(out)
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

/// The item of one attempt (`<time>#<message id>#<n>` under the subscription's attempts).
fn attempt_item(a: &AttemptRecord) -> Item {
    let mut item = HashMap::from([
        ("PK".to_owned(), s(attempts_pk(a.organization, a.subscription_id))),
        ("SK".to_owned(), s(format!("{}#{}#{}", sortable(a.at), a.message_id, a.attempt))),
        ("message_id".to_owned(), s(&a.message_id)),
        ("event_name".to_owned(), s(&a.event_name)),
        ("attempt".to_owned(), n(a.attempt)),
        ("at".to_owned(), n(nanos(a.at))),
        ("latency_ms".to_owned(), n(a.latency_ms)),
        ("response_excerpt".to_owned(), s(&a.response_excerpt)),
        ("request_headers".to_owned(), s(serde_json::to_string(&a.request_headers).unwrap_or_default())),
        ("expires_at".to_owned(), n((a.at + ATTEMPT_RETENTION).unix_timestamp())),
    ]);
    if let Some(status) = a.status {
        item.insert("status".into(), n(status));
    }
    if let Some(error) = &a.error {
        item.insert("error".into(), s(error));
    }
    if a.dead_lettered {
        item.insert("dead_lettered".into(), AttributeValue::Bool(true));
    }
    item
}

/// The item of several attempts of one subscription made in one batch: sorted by the newest,
/// the attempts newest first as JSON, deflated (`attempts_z`).
fn attempt_group_item(group: &[&AttemptRecord]) -> Result<Item> {
    let mut sorted: Vec<&AttemptRecord> = group.to_vec();
    sorted.sort_by(|a, b| b.at.cmp(&a.at).then(b.message_id.cmp(&a.message_id)));
    let newest = sorted[0];
    let json = serde_json::to_vec(&sorted).map_err(Error::internal)?;
    let deflated = miniz_oxide::deflate::compress_to_vec(&json, 6);
    Ok(HashMap::from([
        ("PK".to_owned(), s(attempts_pk(newest.organization, newest.subscription_id))),
        (
            "SK".to_owned(),
            s(format!("{}#{}#{}#{}", sortable(newest.at), newest.message_id, newest.attempt, sorted.len())),
        ),
        ("attempts_z".to_owned(), AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(deflated))),
        ("expires_at".to_owned(), n((sorted[0].at + ATTEMPT_RETENTION).unix_timestamp())),
    ]))
}

fn attempts_pk(org: OrganizationId, subscription_id: Uuid) -> String {
    format!("ORG#{org}#SUB#{subscription_id}#ATT")
}

/// The attempts an item holds, newest first: one (an item of its own) or a batch's group.
fn attempts_of(org: OrganizationId, subscription_id: Uuid, item: &Item) -> Result<Vec<AttemptRecord>> {
    if let Some(group) = item.get("attempts_z") {
        let AttributeValue::B(deflated) = group else { return Err(corrupt("attempts", "attempts_z is not binary")) };
        // A batch is at most 100 attempts of a few KB each.
        let json = miniz_oxide::inflate::decompress_to_vec_with_limit(deflated.as_ref(), 16 * 1024 * 1024)
            .map_err(|e| corrupt("attempts", format!("{e:?}")))?;
        return serde_json::from_slice(&json).map_err(|e| corrupt("attempts", e));
    }
    Ok(vec![AttemptRecord {
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
        // Attempts written before headers were kept have none.
        request_headers: get_opt_s(item, "request_headers")
            .map(|json| serde_json::from_str(&json).map_err(|e| corrupt("attempt", e)))
            .transpose()?
            .unwrap_or_default(),
        dead_lettered: matches!(item.get("dead_lettered"), Some(AttributeValue::Bool(true))),
    }])
}
