//! Publishing on AWS: jobs first, then the claim (DynamoDB and SQS share no transaction).

use std::sync::Arc;

use async_trait::async_trait;

use super::dynamodb::DynamoStore;
use super::sqs::SqsQueue;
use crate::domain::{DeliveryJob, PublishRecord};
use crate::ports::{PublishLog, Queue};
use crate::Result;

/// Publishing on AWS, where DynamoDB and SQS share no transaction: the jobs are sent first,
/// then the message id is claimed with one conditional write, so a claim always has its jobs
/// queued. 2 + ⌈n/10⌉ calls with the fan-out Query. Jobs whose publish did not end in the claim
/// (a repeat of the message id, a crash between the two steps) are dropped at delivery, which
/// reads the claim with the subscription in its one call (`delivery::Provenance`).
pub struct QueueThenClaim {
    pub store: Arc<DynamoStore>,
    pub queue: Arc<SqsQueue>,
}

#[async_trait]
impl PublishLog for QueueThenClaim {
    async fn publish(
        &self,
        record: &PublishRecord,
        jobs: &[DeliveryJob],
        window: time::Duration,
    ) -> Result<Option<PublishRecord>> {
        self.queue.enqueue(jobs, std::time::Duration::ZERO).await?;
        self.store.claim_publish(record, window).await
    }

    /// The jobs of every publish go out together, then each claim is written (concurrently):
    /// ⌈jobs/10⌉ sends for the lot instead of at least one a publish. If the jobs could not all
    /// be sent, nothing is claimed and every publish fails (the jobs that went out are dropped
    /// at delivery, as any unclaimed job is).
    ///
    /// The jobs are sent grouped by subscription ([`grouped_by_subscription`]): SQS hands a
    /// standard queue's messages over roughly, not strictly, in the order they were sent, so a
    /// delivery batch then mostly holds one subscription's jobs and its attempts share one item
    /// (a fifth of a write unit a delivery instead of one). Nothing relies on that order: an
    /// ordered line's order is kept by its seats, not by SQS.
    async fn publish_many(
        &self,
        publishes: &[(PublishRecord, Vec<DeliveryJob>)],
        window: time::Duration,
    ) -> Vec<Result<Option<PublishRecord>>> {
        let jobs = grouped_by_subscription(publishes.iter().flat_map(|(_, jobs)| jobs.iter().cloned()).collect());
        if let Err(err) = self.queue.enqueue(&jobs, std::time::Duration::ZERO).await {
            return publishes.iter().map(|_| Err(err.clone())).collect();
        }
        futures::future::join_all(publishes.iter().map(|(record, _)| self.store.claim_publish(record, window))).await
    }
}

/// Jobs in subscription order, each subscription's in the order given (a stable sort).
fn grouped_by_subscription(mut jobs: Vec<DeliveryJob>) -> Vec<DeliveryJob> {
    jobs.sort_by_key(|job| (job.organization, job.subscription_id));
    jobs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OrganizationId;

    #[test]
    fn jobs_leave_grouped_by_subscription_each_in_publish_order() {
        let org = OrganizationId(uuid::Uuid::from_u128(7));
        let subscriptions = [uuid::Uuid::from_u128(3), uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2)];
        let mut jobs = Vec::new();
        for i in 0..8 {
            for subscription in subscriptions {
                jobs.push(DeliveryJob {
                    message_id: format!("g-{i}"),
                    organization: org,
                    subscription_id: subscription,
                    event_name: "ProductCreated".into(),
                    payload: None,
                    published_at: time::OffsetDateTime::UNIX_EPOCH,
                    attempts: 0,
                    not_before: None,
                    lane: crate::domain::Lane::First,
                    provenance_checked: false,
                    line: None,
                    seat: None,
                    ticket: None,
                    paced_at: None,
                    paced_version: None,
                    earlier_attempts: 0,
                });
            }
        }
        let sent = grouped_by_subscription(jobs);
        let runs = sent.windows(2).filter(|w| w[0].subscription_id != w[1].subscription_id).count() + 1;
        assert_eq!(runs, 3, "one run of jobs a subscription");
        for subscription in subscriptions {
            let order: Vec<&str> =
                sent.iter().filter(|j| j.subscription_id == subscription).map(|j| j.message_id.as_str()).collect();
            assert_eq!(order, (0..8).map(|i| format!("g-{i}")).collect::<Vec<_>>());
        }
    }
}
