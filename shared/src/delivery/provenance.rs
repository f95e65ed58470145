//! Whether a received job is its message's own, and how long a missing claim is waited for.

use std::time::Duration;

use crate::domain::retention::{CLAIM_GRACE, IDEMPOTENCY_WINDOW};
use crate::domain::{to_micros, DeliveryJob, PublishRecord};

/// Whether a job is its message's own: on AWS the jobs are queued before the message id is
/// claimed (`aws::QueueThenClaim`), so jobs whose publish did not end in the claim (a repeat of
/// the id, a crash between the two steps) reach the queue and are dropped here. Locally the
/// claim and the jobs commit together, so every job is its message's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    /// The stored message is the publish that queued this job.
    Published,
    /// The message id was published again after the idempotency window; this job is from the
    /// earlier publish (deliverable while its payload travels with it).
    Earlier,
    /// Another publish of the same id holds the claim: this job is a repeat's.
    Repeat,
    /// No claim yet, and its publish may still be writing it.
    ClaimPending,
    /// No claim, long after its publish: never acknowledged, or no longer retained.
    Unclaimed,
}

/// How long a job found without a claim in its first second waits before it is looked at again.
pub const CLAIM_WAIT: Duration = Duration::from_secs(1);

impl Provenance {
    pub fn of(job: &DeliveryJob, claim: Option<&PublishRecord>, now: time::OffsetDateTime) -> Provenance {
        match claim {
            Some(claim) if to_micros(claim.created_at) == to_micros(job.published_at) => Provenance::Published,
            // Found its own by an earlier receive: the claim may have expired since (a dead
            // letter replayed late), or the id been published again.
            _ if job.provenance_checked => Provenance::Earlier,
            Some(claim) if claim.created_at >= job.published_at + IDEMPOTENCY_WINDOW => Provenance::Earlier,
            Some(_) => Provenance::Repeat,
            None if now < job.published_at + CLAIM_GRACE => Provenance::ClaimPending,
            None => Provenance::Unclaimed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OrganizationId;

    #[test]
    fn a_job_is_its_message_own_only_when_the_claim_is_of_its_publish() {
        let t0 = time::OffsetDateTime::now_utc();
        let record = |at| PublishRecord::new(OrganizationId(uuid::Uuid::nil()), "m", "ProductCreated", "{}", 1, at);
        let job = DeliveryJob::new(&record(t0), uuid::Uuid::nil());
        let of = |claim: Option<PublishRecord>, now| Provenance::of(&job, claim.as_ref(), now);
        assert_eq!(of(Some(record(t0)), t0), Provenance::Published);
        assert_eq!(of(Some(record(t0 + time::Duration::seconds(1))), t0), Provenance::Repeat);
        assert_eq!(of(Some(record(t0 - time::Duration::seconds(1))), t0), Provenance::Repeat, "an earlier claim won");
        let reused = t0 + crate::domain::retention::IDEMPOTENCY_WINDOW;
        assert_eq!(of(Some(record(reused)), reused), Provenance::Earlier, "the id was published again later");
        assert_eq!(of(None, t0 + CLAIM_GRACE - time::Duration::milliseconds(1)), Provenance::ClaimPending);
        assert_eq!(of(None, t0 + CLAIM_GRACE), Provenance::Unclaimed);
        // Found its own once: its claim is needed no more (a dead letter replayed late).
        let checked = job.checked();
        let of_checked = |claim: Option<PublishRecord>, now| Provenance::of(&checked, claim.as_ref(), now);
        assert_eq!(of_checked(None, t0 + time::Duration::days(30)), Provenance::Earlier);
        assert_eq!(of_checked(Some(record(t0)), t0), Provenance::Published);
        assert_eq!(of_checked(Some(record(reused)), reused), Provenance::Earlier);
    }
}
