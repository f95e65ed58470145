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
}
