//! The store on one DynamoDB table.
//!
//! | item | PK | SK | GSI1PK | GSI1SK |
//! | --- | --- | --- | --- | --- |
//! | subscription | `ORG#<org>` | `SUB#<id>` | | |
//! | API key | `KEY#<sha256>` | `KEY` | `KEYS` | `<org>#<created>#<id>` |
//! | published message (idempotency, replay) | `ORG#<org>` | `PUB#<message id>` | | |
//! | last alert of a subscription | `ORG#<org>` | `ALERT#<id>` | | |
//! | request count (rate limit) | `RATE#<client>` | `<window start>` | | |
//! | used nonce (signed requests, portal links) | `NONCE#<nonce>` | `NONCE` | | |
//! | shared secret (the portal's signing key) | `SECRET#<name>` | `SECRET` | | |
//! | store group member | `GROUP#<name>` | `ORG#<org>` | `GROUPS` | `<name>#<org>` |
//! | delivery attempt | `ORG#<org>#SUB#<id>#ATT` | `<at>#<message id>#<attempt>` | | |
//!
//! Fan-out is one strongly consistent Query of the organization's subscriptions (`SUB#` under
//! `ORG#<org>`), matched in memory: one call per publish up to 1 MB of subscriptions (about
//! 1,500), never a Scan. Tables written by 0.1.0 also hold `IDX#` fan-out entries; nothing reads
//! them any more. Message, alert and attempt items carry `expires_at` (epoch seconds), the
//! table's TTL attribute.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, ReturnValuesOnConditionCheckFailure, WriteRequest};
use aws_sdk_dynamodb::Client;

use super::sdk::sdk_error;
use crate::domain::PublishRecord;
use crate::{Error, Result};

mod items;
mod limits;
pub(crate) mod lines;
use items::{n, nanos, org_pk, payload_attribute, publish_from, s, Item};
mod store;

/// The GSI that lists API keys and store groups.
pub const GSI1: &str = "GSI1";

/// Whether a conditional write was refused by its condition (any operation's error).
fn condition_failed<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    err.as_service_error().and_then(|e| e.code()) == Some("ConditionalCheckFailedException")
}

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

    /// Claims a message id for a publish whose jobs are already on the queue: one conditional
    /// PutItem. Returns the existing record instead when one younger than `window` holds the id
    /// (the jobs just sent are then dropped at delivery: see `delivery::Provenance`).
    pub async fn claim_publish(&self, record: &PublishRecord, window: time::Duration) -> Result<Option<PublishRecord>> {
        let pk = org_pk(record.organization);
        let sk = format!("PUB#{}", record.message_id);
        let mut item = HashMap::from([
            ("PK".to_owned(), s(&pk)),
            ("SK".to_owned(), s(&sk)),
            ("event_name".to_owned(), s(&record.event_name)),
            ("subscriptions".to_owned(), n(record.subscriptions)),
            ("created_at".to_owned(), n(nanos(record.created_at))),
            ("retain_until".to_owned(), n(nanos(record.expires_at))),
            ("expires_at".to_owned(), n(record.expires_at.unix_timestamp())),
        ]);
        if let Some(key) = &record.ordering_key {
            item.insert("ordering_key".to_owned(), s(key));
        }
        if !record.filtered_out.is_empty() {
            let ids = record.filtered_out.iter().map(ToString::to_string).collect();
            item.insert("filtered_out".to_owned(), AttributeValue::Ss(ids));
        }
        let (name, payload) = payload_attribute(&record.payload);
        item.insert(name.to_owned(), payload);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK) OR created_at <= :cutoff")
            .expression_attribute_values(":cutoff", n(nanos(record.created_at - window)))
            // The record that holds the id comes back with the refusal: no second read.
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(None),
            Err(err) => match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(refused)) => {
                    let existing = refused.item.as_ref().ok_or_else(|| {
                        Error::internal("DynamoDB refused the claim without returning the record that holds the id")
                    })?;
                    let existing = publish_from(record.organization, &record.message_id, existing)?;
                    // The SDK retried a put that had landed: the record is this publish's own
                    // (the same creation time, to the nanosecond), not a repeat.
                    if existing.created_at == record.created_at {
                        return Ok(None);
                    }
                    Ok(Some(existing))
                }
                _ => Err(sdk_error("DynamoDB PutItem", err)),
            },
        }
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
                // Strongly consistent on the table itself (a GSI cannot be).
                .consistent_read(index.is_none())
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
