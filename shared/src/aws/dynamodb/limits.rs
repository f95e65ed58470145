//! The limits on the one DynamoDB table: alert windows claimed once, nonces used once, the
//! shared secrets, a rate-limited subscription's request slots (its `PACE#` item), and the
//! per-minute request counts.

use super::items::{get_n, get_opt_n, get_s, n, nanos, org_pk, s, time_from};
use super::{condition_failed, DynamoStore};
use crate::aws::sdk::sdk_error;
use crate::domain::OrganizationId;
use crate::ports::Limits;
use crate::{Error, Result};
use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

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
            Err(err) if condition_failed(&err) => Ok(false),
            Err(err) => Err(sdk_error("DynamoDB PutItem", err)),
        }
    }

    async fn use_once(&self, nonce: &str, now: OffsetDateTime, expires_at: OffsetDateTime) -> Result<bool> {
        // One conditional put, shared by every Lambda instance; the TTL removes it (and an
        // expired one not removed yet may be used again).
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("PK", s(format!("NONCE#{nonce}")))
            .item("SK", s("NONCE"))
            .item("expires_at", n(expires_at.unix_timestamp()))
            .condition_expression("attribute_not_exists(PK) OR expires_at <= :now")
            .expression_attribute_values(":now", n(now.unix_timestamp()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) if condition_failed(&err) => Ok(false),
            Err(err) => Err(sdk_error("DynamoDB PutItem", err)),
        }
    }

    async fn was_used(&self, nonce: &str, now: OffsetDateTime) -> Result<bool> {
        // Strongly consistent: a use by another instance a moment ago counts.
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("PK", s(format!("NONCE#{nonce}")))
            .key("SK", s("NONCE"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("DynamoDB GetItem", e))?
            .item;
        Ok(match item {
            Some(item) => get_n::<i64>(&item, "expires_at")? > now.unix_timestamp(),
            None => false,
        })
    }

    async fn shared_secret(&self, name: &str, candidate: &str) -> Result<String> {
        // The first writer wins; everyone, the first included, reads what was kept.
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("PK", s(format!("SECRET#{name}")))
            .item("SK", s("SECRET"))
            .item("value", s(candidate))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .await;
        match result {
            Ok(_) => return Ok(candidate.to_owned()),
            Err(err) if condition_failed(&err) => {}
            Err(err) => return Err(sdk_error("DynamoDB PutItem", err)),
        }
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("PK", s(format!("SECRET#{name}")))
            .key("SK", s("SECRET"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("DynamoDB GetItem", e))?
            .item
            .ok_or_else(|| Error::internal(format!("secret {name} vanished after its write was refused")))?;
        get_s(&item, "value")
    }

    async fn reserve_slots(
        &self,
        key: &str,
        version: i64,
        now: OffsetDateTime,
        interval: std::time::Duration,
        count: u32,
    ) -> Result<Option<OffsetDateTime>> {
        // One write unit a reservation, however many slots it takes: the item is read first
        // (eventually consistent, half a read unit; a stale read only fails a condition), so
        // the write is the one that fits. A busy pace (its next slot ahead, this version) takes
        // an atomic ADD, which concurrent reservations never make fail; an idle, new or older
        // version's pace is set to start at now, conditional on being as read, and a reservation
        // that lost that race reads again and adds.
        let interval = i64::try_from(interval.as_nanos()).unwrap_or(i64::MAX);
        let span = interval.saturating_mul(i64::from(count));
        let (pk, now_nanos) = (s(format!("PACE#{key}")), nanos(now));
        // Idle for a day after its last reserved slot, the item goes (TTL).
        let expires = |next: i64| time_from(next).map(|t| t.unix_timestamp() + 24 * 60 * 60);
        let mut consistent = false;
        for _ in 0..4 {
            let seen = self
                .client
                .get_item()
                .table_name(&self.table)
                .key("PK", pk.clone())
                .key("SK", s("PACE"))
                .consistent_read(consistent)
                .send()
                .await
                .map_err(|e| sdk_error("DynamoDB GetItem (pace)", e))?
                .item;
            consistent = true;
            let update = self.client.update_item().table_name(&self.table).key("PK", pk.clone()).key("SK", s("PACE"));
            let seen = match seen {
                // An item from before limits had versions paces version 0.
                Some(item) => {
                    Some((get_n::<i64>(&item, "next_slot")?, get_opt_n::<i64>(&item, "version")?.unwrap_or(0)))
                }
                None => None,
            };
            let written = match seen {
                Some((_, newer)) if newer > version => return Ok(None),
                Some((next, same)) if same == version && next > now_nanos => {
                    let added = update
                        .update_expression("SET next_slot = next_slot + :span, expires_at = :expires")
                        .condition_expression("version = :version AND next_slot > :now")
                        .expression_attribute_values(":span", n(span))
                        .expression_attribute_values(":version", n(version))
                        .expression_attribute_values(":now", n(now_nanos))
                        .expression_attribute_values(":expires", n(expires(next.saturating_add(span))?))
                        .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
                        .send()
                        .await;
                    match added {
                        Ok(out) => {
                            let next: i64 = get_n(&out.attributes.unwrap_or_default(), "next_slot")?;
                            return time_from(next.saturating_sub(span)).map(Some);
                        }
                        Err(err) => err,
                    }
                }
                seen => {
                    let update = update
                        .update_expression("SET next_slot = :next, version = :version, expires_at = :expires")
                        .expression_attribute_values(":next", n(now_nanos.saturating_add(span)))
                        .expression_attribute_values(":version", n(version))
                        .expression_attribute_values(":expires", n(expires(now_nanos.saturating_add(span))?));
                    let update = match seen {
                        None => update.condition_expression("attribute_not_exists(next_slot)"),
                        Some((next, seen_version)) => update
                            .condition_expression(
                                "next_slot = :seen AND (version = :seen_version OR attribute_not_exists(version))",
                            )
                            .expression_attribute_values(":seen", n(next))
                            .expression_attribute_values(":seen_version", n(seen_version)),
                    };
                    match update.send().await {
                        Ok(_) => return Ok(Some(now)),
                        Err(err) => err,
                    }
                }
            };
            if !condition_failed(&written) {
                return Err(sdk_error("DynamoDB UpdateItem (pace)", written));
            }
        }
        Err(Error::internal(format!("the pace of {key} kept changing under its reservation")))
    }

    async fn count_requests(
        &self,
        client: &str,
        requests: u32,
        window_start: i64,
        expires_at: OffsetDateTime,
    ) -> Result<u32> {
        // One atomic counter per client and window, shared by every Lambda instance.
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("PK", s(format!("RATE#{client}")))
            .key("SK", s(window_start.to_string()))
            .update_expression("ADD hits :requests SET expires_at = :expires")
            .expression_attribute_values(":requests", n(requests))
            .expression_attribute_values(":expires", n(expires_at.unix_timestamp()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| sdk_error("DynamoDB UpdateItem", e))?;
        let attributes = out.attributes.unwrap_or_default();
        get_n(&attributes, "hits")
    }
}
