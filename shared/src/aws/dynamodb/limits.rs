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
        // One write unit a reservation, however many slots it takes and whether the pace is
        // idle or busy: the item is read (an eventually consistent read, half a read unit: a
        // stale one only fails the write's condition) and written back conditional on being as
        // read. A reservation that lost a race reads again, consistently.
        let interval = i64::try_from(interval.as_nanos()).unwrap_or(i64::MAX);
        let span = interval.saturating_mul(i64::from(count));
        let (pk, now_nanos) = (s(format!("PACE#{key}")), nanos(now));
        let mut consistent = false;
        for _ in 0..8 {
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
            let update = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("PK", pk.clone())
                .key("SK", s("PACE"))
                .update_expression("SET next_slot = :next, version = :version, expires_at = :expires")
                .expression_attribute_values(":version", n(version));
            let (first, update) = match seen {
                None => (now_nanos, update.condition_expression("attribute_not_exists(next_slot)")),
                Some(item) => {
                    let seen_next: i64 = get_n(&item, "next_slot")?;
                    // An item from before limits had versions paces version 0.
                    let seen_version: i64 = get_opt_n(&item, "version")?.unwrap_or(0);
                    if seen_version > version {
                        return Ok(None);
                    }
                    let first = if seen_version == version { seen_next.max(now_nanos) } else { now_nanos };
                    let update = update
                        .condition_expression(
                            "next_slot = :seen AND (version = :seen_version OR attribute_not_exists(version))",
                        )
                        .expression_attribute_values(":seen", n(seen_next))
                        .expression_attribute_values(":seen_version", n(seen_version));
                    (first, update)
                }
            };
            let next = first.saturating_add(span);
            // Idle for a day after its last slot, the item goes (TTL).
            let expires = time_from(next)?.unix_timestamp() + 24 * 60 * 60;
            let written = update
                .expression_attribute_values(":next", n(next))
                .expression_attribute_values(":expires", n(expires))
                .send()
                .await;
            match written {
                Ok(_) => return time_from(first).map(Some),
                Err(err) if condition_failed(&err) => consistent = true,
                Err(err) => return Err(sdk_error("DynamoDB UpdateItem (pace)", err)),
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
