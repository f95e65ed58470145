//! Ordered delivery on AWS: each line (an ordered subscription's ordering key) is a DynamoDB
//! partition of seats in queueing order, and only the seat at its head has a job on SQS. A job
//! joins its line's end; when the head's job is finished with (delivered, skipped or
//! dead-lettered) its seat is removed and the new head's job is sent. Whoever makes a seat the
//! head sends its job: the joiner of an empty line, or the leaver of the seat ahead; a
//! conditional `queued` mark makes that exactly one of them when both look at once.
//!
//! Every seat holds a lease: joining gives it one, marking it sent a new one, and every receive
//! of its job renews it (a job waiting is received at least every 15 minutes: no wait is held
//! in flight). A head whose lease lapsed has lost its job — its sender stopped between mark and
//! send, or between releasing the seat ahead and marking it; SQS's redrive moved it to the
//! dead-letter queue; its seat could not be released after delivery — and the sweeper
//! ([`DynamoStore::lapsed_heads`], run on a schedule) takes it over; a seat further back whose
//! lease lapsed is only waiting, and gets a new one. Each send of a head carries a new ticket:
//! a copy with an older ticket (superseded by the sweeper or by a replay) is no longer its
//! seat's and is skipped. Seats are listed in GSI1 under a few `LEASES#<shard>` keys, sorted by
//! when their lease lapses.

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use time::OffsetDateTime;

use super::items::{get_opt_n, get_opt_s, s, sortable, Item};
use super::{condition_failed, DynamoStore, GSI1};
use crate::aws::sdk::sdk_error;
use crate::domain::retention::CLAIM_GRACE;
use crate::domain::DeliveryJob;
use crate::ports::LinePlace;
use crate::{Error, Result};

/// How many GSI1 keys the leased heads are spread over (each sweep reads them all).
const LEASE_SHARDS: u32 = 8;

/// The partition of a job's line.
fn line_pk(job: &DeliveryJob) -> Option<String> {
    let line = job.line.as_ref()?;
    Some(format!("LINE#{}#{}#{line}", job.organization, job.subscription_id))
}

/// The GSI1 key of a line's leased head.
fn lease_shard(pk: &str) -> String {
    let shard = pk.bytes().fold(0u32, |sum, b| sum.wrapping_mul(31).wrapping_add(b.into())) % LEASE_SHARDS;
    format!("LEASES#{shard}")
}

/// The GSI1 sort key of a head whose lease lapses at `until`.
fn lease_sort_key(until: OffsetDateTime, pk: &str, seat: &str) -> String {
    format!("{}#{pk}#{seat}", sortable(until))
}

/// The time a seat was taken, from its sort key (zero-padded nanoseconds first).
fn seated_at(seat: &str) -> Option<OffsetDateTime> {
    let nanos: i64 = seat.split('#').next()?.parse().ok()?;
    OffsetDateTime::from_unix_timestamp_nanos(nanos.into()).ok()
}

/// A head whose lease lapsed, taken over by the sweeper: its job (with its new ticket) and how
/// many times the sweeper has taken it over.
pub(crate) struct LapsedHead {
    pub job: DeliveryJob,
    pub sweeps: u32,
}

impl DynamoStore {
    /// Seats `job` at the end of its line. Returns the job to send now, if this call made a
    /// job the head of its line: its own in an empty line, or a head whose sender never sent it
    /// (a joiner that stopped between its two steps, found after [`CLAIM_GRACE`]).
    pub(crate) async fn join_line(
        &self,
        job: &DeliveryJob,
        now: OffsetDateTime,
        lease: time::Duration,
    ) -> Result<Option<DeliveryJob>> {
        let pk = line_pk(job).ok_or_else(|| Error::internal("only a job of a line joins one"))?;
        let seat = format!("{}#{}", sortable(now), job.message_id);
        let seated = DeliveryJob { seat: Some(seat.clone()), ticket: None, ..job.clone() };
        let until = now + lease;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("PK", s(&pk))
            .item("SK", s(&seat))
            .item("job", s(serde_json::to_string(&seated)?))
            .item("lease_until", s(sortable(until)))
            .item("GSI1PK", s(lease_shard(&pk)))
            .item("GSI1SK", s(lease_sort_key(until, &pk, &seat)))
            .send()
            .await
            .map_err(|e| sdk_error("DynamoDB PutItem (line)", e))?;
        let Some((head_seat, head_job, queued)) = self.line_head(&pk).await? else { return Ok(None) };
        // The head is this publish's to send when it is its own seat, or an earlier seat of the
        // same message (a repeated publish whose first try stopped before sending), or a seat
        // whose publish stopped long ago.
        let own = head_seat == seat || head_job.message_id == job.message_id;
        let abandoned = seated_at(&head_seat).is_some_and(|at| at + CLAIM_GRACE < now);
        if queued || !(own || abandoned) {
            return Ok(None);
        }
        self.mark_queued(&pk, &head_seat, head_job, now, lease).await
    }

    /// Removes `job`'s seat from its line; returns the new head's job when this call is the one
    /// to send it.
    pub(crate) async fn leave_line(
        &self,
        job: &DeliveryJob,
        now: OffsetDateTime,
        lease: time::Duration,
    ) -> Result<Option<DeliveryJob>> {
        let (Some(pk), Some(seat)) = (line_pk(job), job.seat.as_ref()) else { return Ok(None) };
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("PK", s(&pk))
            .key("SK", s(seat))
            .send()
            .await
            .map_err(|e| sdk_error("DynamoDB DeleteItem (line)", e))?;
        match self.line_head(&pk).await? {
            Some((head_seat, head_job, false)) => self.mark_queued(&pk, &head_seat, head_job, now, lease).await,
            _ => Ok(None),
        }
    }

    /// Whether `job` still holds its seat, as the copy its seat was last sent with; if so its
    /// lease is renewed. Not for a copy received again after its line moved on, nor for one
    /// superseded by a newer send of its seat (the sweeper's, a replay's).
    pub(crate) async fn renew_seat(
        &self,
        job: &DeliveryJob,
        now: OffsetDateTime,
        lease: time::Duration,
    ) -> Result<LinePlace> {
        let (Some(pk), Some(seat)) = (line_pk(job), job.seat.as_ref()) else { return Ok(LinePlace::Held) };
        let until = now + lease;
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("PK", s(&pk))
            .key("SK", s(seat))
            .update_expression("SET lease_until = :until, GSI1PK = :shard, GSI1SK = :lapses")
            .expression_attribute_values(":until", s(sortable(until)))
            .expression_attribute_values(":shard", s(lease_shard(&pk)))
            .expression_attribute_values(":lapses", s(lease_sort_key(until, &pk, seat)))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        update = match job.ticket {
            Some(ticket) => update
                .condition_expression("attribute_exists(PK) AND ticket = :ticket")
                .expression_attribute_values(":ticket", AttributeValue::N(ticket.to_string())),
            // A job sent before seats had tickets.
            None => update.condition_expression("attribute_exists(PK) AND attribute_not_exists(ticket)"),
        };
        match update.send().await {
            Ok(_) => Ok(LinePlace::Held),
            Err(err) => match err.as_service_error() {
                // The seat is there, sent with another ticket.
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) if failed.item.is_some() => {
                    Ok(LinePlace::Superseded)
                }
                Some(UpdateItemError::ConditionalCheckFailedException(_)) => Ok(LinePlace::Left),
                _ => Err(sdk_error("DynamoDB UpdateItem (line)", err)),
            },
        }
    }

    /// Sends a replayed job back to its seat if its line still holds it (the head SQS's redrive
    /// moved to the dead-letter queue): the seat is marked sent with a new ticket and the job to
    /// send returned, so the line moves on from it instead of the replay waiting behind it.
    /// None: the seat is gone (the line moved on), and the replay joins the line's end.
    pub(crate) async fn reclaim_seat(
        &self,
        job: &DeliveryJob,
        now: OffsetDateTime,
        lease: time::Duration,
    ) -> Result<Option<DeliveryJob>> {
        let (Some(pk), Some(seat)) = (line_pk(job), job.seat.as_ref()) else { return Ok(None) };
        self.take_seat(&pk, seat, "attribute_exists(PK)", None, now + lease, job.clone())
            .await
            .map(|taken| taken.map(|(job, _)| job))
    }

    /// Heads whose lease lapsed before `now`, each taken over with a new ticket and lease (a
    /// head another sweep took first is left to it): at most `limit` of each shard. A seat
    /// further back whose lease lapsed is waiting its turn: it gets a new lease.
    pub(crate) async fn lapsed_heads(
        &self,
        now: OffsetDateTime,
        lease: time::Duration,
        limit: usize,
    ) -> Result<Vec<LapsedHead>> {
        let mut taken = Vec::new();
        for shard in 0..LEASE_SHARDS {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(GSI1)
                .key_condition_expression("GSI1PK = :shard AND GSI1SK < :now")
                .expression_attribute_values(":shard", s(format!("LEASES#{shard}")))
                .expression_attribute_values(":now", s(sortable(now)))
                .limit(i32::try_from(limit).unwrap_or(i32::MAX))
                .send()
                .await
                .map_err(|e| sdk_error("DynamoDB Query (lapsed leases)", e))?;
            for item in out.items.unwrap_or_default() {
                let (Some(pk), Some(seat), Some(lapsed)) =
                    (get_opt_s(&item, "PK"), get_opt_s(&item, "SK"), get_opt_s(&item, "lease_until"))
                else {
                    continue;
                };
                let job = seat_job(&item)?;
                let is_head = self.line_head(&pk).await?.is_some_and(|(head, _, _)| head == seat);
                if !is_head {
                    self.extend_lease(&pk, &seat, &lapsed, now + lease).await?;
                    continue;
                }
                // Only if no one renewed or took it since it was read.
                let condition = "attribute_exists(PK) AND lease_until = :lapsed";
                if let Some((job, sweeps)) =
                    self.take_seat(&pk, &seat, condition, Some(lapsed), now + lease, job).await?
                {
                    taken.push(LapsedHead { job, sweeps });
                }
            }
        }
        Ok(taken)
    }

    /// A new lease for a seat waiting its turn, unless someone renewed it since `lapsed`.
    async fn extend_lease(&self, pk: &str, seat: &str, lapsed: &str, until: OffsetDateTime) -> Result<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("PK", s(pk))
            .key("SK", s(seat))
            .update_expression("SET lease_until = :until, GSI1SK = :lapses")
            .condition_expression("attribute_exists(PK) AND lease_until = :lapsed")
            .expression_attribute_values(":until", s(sortable(until)))
            .expression_attribute_values(":lapses", s(lease_sort_key(until, pk, seat)))
            .expression_attribute_values(":lapsed", s(lapsed))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if condition_failed(&err) => Ok(()),
            Err(err) => Err(sdk_error("DynamoDB UpdateItem (line)", err)),
        }
    }

    /// Marks a seat sent with the next ticket and a lease until `until`, if `condition` holds;
    /// returns `job` with its seat and ticket, and how many times the sweeper took the seat over.
    async fn take_seat(
        &self,
        pk: &str,
        seat: &str,
        condition: &str,
        lapsed: Option<String>,
        until: OffsetDateTime,
        job: DeliveryJob,
    ) -> Result<Option<(DeliveryJob, u32)>> {
        let sweep = u32::from(lapsed.is_some());
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("PK", s(pk))
            .key("SK", s(seat))
            .update_expression(
                "SET queued = :yes, ticket = if_not_exists(ticket, :zero) + :one, \
                 sweeps = if_not_exists(sweeps, :zero) + :sweep, \
                 lease_until = :until, GSI1PK = :shard, GSI1SK = :lapses",
            )
            .condition_expression(condition)
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":sweep", AttributeValue::N(sweep.to_string()))
            .expression_attribute_values(":until", s(sortable(until)))
            .expression_attribute_values(":shard", s(lease_shard(pk)))
            .expression_attribute_values(":lapses", s(lease_sort_key(until, pk, seat)))
            .return_values(ReturnValue::AllNew);
        if let Some(lapsed) = lapsed {
            update = update.expression_attribute_values(":lapsed", s(lapsed));
        }
        match update.send().await {
            Ok(out) => {
                let item = out.attributes.unwrap_or_default();
                let ticket = get_opt_n::<u32>(&item, "ticket")?;
                let sweeps = get_opt_n::<u32>(&item, "sweeps")?.unwrap_or(0);
                Ok(Some((DeliveryJob { seat: Some(seat.to_owned()), ticket, ..job }, sweeps)))
            }
            Err(err) if condition_failed(&err) => Ok(None),
            Err(err) => Err(sdk_error("DynamoDB UpdateItem (line)", err)),
        }
    }

    /// The first seat of a line: its sort key, its job and whether its job was sent.
    async fn line_head(&self, pk: &str) -> Result<Option<(String, DeliveryJob, bool)>> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk")
            .expression_attribute_values(":pk", s(pk))
            .consistent_read(true)
            .limit(1)
            .send()
            .await
            .map_err(|e| sdk_error("DynamoDB Query (line)", e))?;
        let Some(item) = out.items.unwrap_or_default().into_iter().next() else { return Ok(None) };
        let seat = get_opt_s(&item, "SK").ok_or_else(|| Error::internal("a line seat without a sort key"))?;
        Ok(Some((seat, seat_job(&item)?, item.contains_key("queued"))))
    }

    /// Takes back the `queued` mark of a head whose send failed. Its lease lapses at once, so
    /// the sweeper sends it if no one else does first.
    pub(crate) async fn unmark_queued(&self, head: &DeliveryJob, now: OffsetDateTime) -> Result<()> {
        let (Some(pk), Some(seat)) = (line_pk(head), head.seat.as_ref()) else { return Ok(()) };
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("PK", s(&pk))
            .key("SK", s(seat))
            .update_expression("REMOVE queued SET lease_until = :now, GSI1PK = :shard, GSI1SK = :lapses")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":now", s(sortable(now)))
            .expression_attribute_values(":shard", s(lease_shard(&pk)))
            .expression_attribute_values(":lapses", s(lease_sort_key(now, &pk, seat)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if condition_failed(&err) => Ok(()),
            Err(err) => Err(sdk_error("DynamoDB UpdateItem (line)", err)),
        }
    }

    /// Marks a head's job as sent (with its ticket and lease); None when someone else marked
    /// it first.
    async fn mark_queued(
        &self,
        pk: &str,
        seat: &str,
        job: DeliveryJob,
        now: OffsetDateTime,
        lease: time::Duration,
    ) -> Result<Option<DeliveryJob>> {
        let condition = "attribute_exists(PK) AND attribute_not_exists(queued)";
        self.take_seat(pk, seat, condition, None, now + lease, job).await.map(|taken| taken.map(|(job, _)| job))
    }
}

fn seat_job(item: &Item) -> Result<DeliveryJob> {
    let job = get_opt_s(item, "job").ok_or_else(|| Error::internal("a line seat without its job"))?;
    serde_json::from_str(&job).map_err(|e| Error::internal(format!("a line seat's job is unreadable: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leased_heads_spread_over_every_shard_and_sort_by_when_they_lapse() {
        let shards: std::collections::HashSet<String> =
            (0..200).map(|n| lease_shard(&format!("LINE#org#sub#key-{n}"))).collect();
        assert_eq!(shards.len(), LEASE_SHARDS as usize);
        let early = lease_sort_key(OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(9), "LINE#b", "s");
        let late = lease_sort_key(OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(10), "LINE#a", "s");
        assert!(early < late && late < sortable(OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(11)));
    }
}
