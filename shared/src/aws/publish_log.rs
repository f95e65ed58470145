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
    /// The jobs are sent grouped by subscription: SQS hands a standard queue's messages over
    /// roughly in the order they were sent, so a delivery batch then holds one subscription's
    /// jobs and its attempts share one item (a fifth of a write unit a delivery instead of one).
    /// The sort is stable: an ordered line's jobs keep their publish order.
    async fn publish_many(
        &self,
        publishes: &[(PublishRecord, Vec<DeliveryJob>)],
        window: time::Duration,
    ) -> Vec<Result<Option<PublishRecord>>> {
        let mut jobs: Vec<DeliveryJob> = publishes.iter().flat_map(|(_, jobs)| jobs.iter().cloned()).collect();
        jobs.sort_by_key(|job| (job.organization, job.subscription_id));
        if let Err(err) = self.queue.enqueue(&jobs, std::time::Duration::ZERO).await {
            return publishes.iter().map(|_| Err(err.clone())).collect();
        }
        futures::future::join_all(publishes.iter().map(|(record, _)| self.store.claim_publish(record, window))).await
    }
}
