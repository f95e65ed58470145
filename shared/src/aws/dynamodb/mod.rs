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
use crate::domain::{
    ApiKey, AttemptRecord, OrganizationId, PublishRecord, Scope, StoreGroup, Subscription, SubscriptionStatus,
};
use crate::ports::{KeyStore, Limits, MessageLog, StoreGroups, SubscriptionStore};
use crate::{Error, Result};

mod items;
use items::*;
mod store;

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
