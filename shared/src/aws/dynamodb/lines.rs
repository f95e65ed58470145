//! Ordered delivery on AWS: each line (an ordered subscription's ordering key) is a DynamoDB
//! partition of seats in queueing order, and only the seat at its head has a job on SQS. A job
//! joins its line's end; when the head's job is finished with (delivered, skipped or
//! dead-lettered) its seat is removed and the new head's job is sent. Whoever makes a seat the
//! head sends its job: the joiner of an empty line, or the leaver of the seat ahead; a
//! conditional `queued` mark makes that exactly one of them when both look at once.

use aws_sdk_dynamodb::types::AttributeValue;
use time::OffsetDateTime;

use super::items::{get_opt_s, s, sortable, Item};
use super::{condition_failed, DynamoStore};
use crate::aws::sdk::sdk_error;
use crate::delivery::CLAIM_GRACE;
use crate::domain::DeliveryJob;
use crate::{Error, Result};

/// The partition of a job's line.
fn line_pk(job: &DeliveryJob) -> Option<String> {
    let line = job.line.as_ref()?;
    Some(format!("LINE#{}#{}#{line}", job.organization, job.subscription_id))
}

/// The time a seat was taken, from its sort key (zero-padded nanoseconds first).
fn seated_at(seat: &str) -> Option<OffsetDateTime> {
    let nanos: i64 = seat.split('#').next()?.parse().ok()?;
    OffsetDateTime::from_unix_timestamp_nanos(nanos.into()).ok()
}

impl DynamoStore {
    /// Seats `job` at the end of its line. Returns the job to send now, if this call made a
    /// job the head of its line: its own in an empty line, or a head whose sender never sent it
    /// (a joiner that stopped between its two steps, found after [`CLAIM_GRACE`]).
    pub(crate) async fn join_line(&self, job: &DeliveryJob, now: OffsetDateTime) -> Result<Option<DeliveryJob>> {
        let pk = line_pk(job).ok_or_else(|| Error::internal("only a job of a line joins one"))?;
        let seat = format!("{}#{}", sortable(now), job.message_id);
        let seated = DeliveryJob { seat: Some(seat.clone()), ..job.clone() };
        self.client
            .put_item()
            .table_name(&self.table)
            .item("PK", s(&pk))
            .item("SK", s(&seat))
            .item("job", s(serde_json::to_string(&seated)?))
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
        self.mark_queued(&pk, &head_seat).await.map(|won| won.then_some(head_job))
    }

    /// Removes `job`'s seat from its line; returns the new head's job when this call is the one
    /// to send it.
    pub(crate) async fn leave_line(&self, job: &DeliveryJob) -> Result<Option<DeliveryJob>> {
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
            Some((head_seat, head_job, false)) => {
                self.mark_queued(&pk, &head_seat).await.map(|won| won.then_some(head_job))
            }
            _ => Ok(None),
        }
    }

    /// Whether `job`'s seat is still in its line (a copy received again after its line moved
    /// on is not).
    pub(crate) async fn holds_seat(&self, job: &DeliveryJob) -> Result<bool> {
        let (Some(pk), Some(seat)) = (line_pk(job), job.seat.as_ref()) else { return Ok(true) };
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("PK", s(&pk))
            .key("SK", s(seat))
            .consistent_read(true)
            .projection_expression("PK")
            .send()
            .await
            .map_err(|e| sdk_error("DynamoDB GetItem (line)", e))?;
        Ok(out.item.is_some())
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

    /// Takes back the `queued` mark of a head whose send failed.
    pub(crate) async fn unmark_queued(&self, head: &DeliveryJob) -> Result<()> {
        let (Some(pk), Some(seat)) = (line_pk(head), head.seat.as_ref()) else { return Ok(()) };
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("PK", s(&pk))
            .key("SK", s(seat))
            .update_expression("REMOVE queued")
            .condition_expression("attribute_exists(PK)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if condition_failed(&err) => Ok(()),
            Err(err) => Err(sdk_error("DynamoDB UpdateItem (line)", err)),
        }
    }

    /// Marks a head's job as sent; false when someone else marked it first.
    async fn mark_queued(&self, pk: &str, seat: &str) -> Result<bool> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("PK", s(pk))
            .key("SK", s(seat))
            .update_expression("SET queued = :yes")
            .condition_expression("attribute_exists(PK) AND attribute_not_exists(queued)")
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) if condition_failed(&err) => Ok(false),
            Err(err) => Err(sdk_error("DynamoDB UpdateItem (line)", err)),
        }
    }
}

fn seat_job(item: &Item) -> Result<DeliveryJob> {
    let job = get_opt_s(item, "job").ok_or_else(|| Error::internal("a line seat without its job"))?;
    serde_json::from_str(&job).map_err(|e| Error::internal(format!("a line seat's job is unreadable: {e}")))
}
