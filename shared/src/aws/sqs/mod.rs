//! The delivery queue on SQS, with a dead-letter queue.
//!
//! The receipt is the SQS receipt handle; the receive count is SQS's
//! `ApproximateReceiveCount`. Delays up to 15 minutes ride on `DelaySeconds`; a longer wait
//! rides on the job (`not_before`), and each time its message comes back early it is sent on
//! again as a new delayed message. So no wait is ever held in flight: SQS caps a queue's
//! received-and-undeleted messages (about 120,000), and past the cap every receive of the queue
//! comes back empty, for every tenant. The main queue's redrive policy is the safety net: a
//! message that keeps failing without being dead-lettered explicitly (a crash, a poison
//! message) still reaches the DLQ after `maxReceiveCount`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;

use super::sdk::sdk_error;
use super::DynamoStore;
use crate::domain::{DeliveryJob, Lane};
use crate::ports::{Queue, ReceivedJob};
use crate::{Error, Result};

mod dead_letters;
mod ordered;
mod send;

/// SQS's limits.
const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);
/// The longest a received message is hidden again. SQS counts its 12 h visibility limit from
/// the receive, and refuses a change beyond it; the receive was moments ago, so stay 10 minutes
/// short. A longer wait comes back early and is hidden again (the job carries its due time).
pub(crate) const MAX_DEFER: Duration = Duration::from_secs(12 * 60 * 60 - 10 * 60);
/// The most messages one SQS batch call takes.
const MAX_BATCH: usize = 10;
pub struct SqsQueue {
    client: Client,
    queue_url: String,
    /// Where retries go: a second queue with its own event source (the slow lane), so failing
    /// endpoints never share a batch with healthy ones. The delivery queue itself when unset.
    retry_url: String,
    /// Where jobs wait for their rate-limit slot (the paced lane): a queue of its own, whose
    /// batches may wait up to [`Queue::lateness`]. The retry queue when unset.
    paced_url: String,
    dead_letter_url: String,
    /// Where ordered jobs wait their turn (`DynamoStore::join_line`); none: no ordering.
    lines: Option<Arc<DynamoStore>>,
    /// The longest `DelaySeconds` (SQS: 15 minutes).
    max_delay: Duration,
    /// How long a line's head keeps its seat without its job being received (see
    /// `dynamodb::lines`): past it, the sweeper sends the head's job again.
    line_lease: time::Duration,
}

/// A head's lease: twice SQS's longest delay (a waiting job comes back at least that often)
/// plus the queues' visibility timeout (6 minutes) and room for a backlog.
const DEFAULT_LINE_LEASE: Duration = Duration::from_secs(45 * 60);

/// Receipts of messages taken from the retry and paced queues carry these prefixes, so
/// acknowledging and hiding them goes to the right queue.
const RETRY_RECEIPT: &str = "retry|";
const PACED_RECEIPT: &str = "paced|";

impl SqsQueue {
    pub fn new(client: Client, queue_url: impl Into<String>, dead_letter_url: impl Into<String>) -> Self {
        let queue_url = queue_url.into();
        SqsQueue {
            client,
            retry_url: queue_url.clone(),
            paced_url: queue_url.clone(),
            queue_url,
            dead_letter_url: dead_letter_url.into(),
            lines: None,
            max_delay: MAX_DELAY,
            line_lease: time::Duration::try_from(DEFAULT_LINE_LEASE).unwrap_or(time::Duration::HOUR),
        }
    }

    /// Leases a line's head for `lease` (a test scales it down).
    pub fn with_line_lease(mut self, lease: Duration) -> Self {
        self.line_lease = time::Duration::try_from(lease).unwrap_or(self.line_lease);
        self
    }

    /// Delays messages at most `max_delay` (SQS's own maximum unless a test scales it down).
    pub fn with_max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = max_delay.min(MAX_DELAY);
        self
    }

    /// Sends retries to `retry_url` instead of the delivery queue (and paced jobs, until they
    /// have a queue of their own).
    pub fn with_retry_queue(mut self, retry_url: impl Into<String>) -> Self {
        let retry_url = retry_url.into();
        if self.paced_url == self.queue_url {
            self.paced_url = retry_url.clone();
        }
        self.retry_url = retry_url;
        self
    }

    /// Sends jobs waiting for their rate-limit slot to `paced_url`.
    pub fn with_paced_queue(mut self, paced_url: impl Into<String>) -> Self {
        self.paced_url = paced_url.into();
        self
    }

    /// Our receipt for a message `handle` received from `queue_url`.
    fn receipt(&self, queue_url: &str, handle: String) -> String {
        if queue_url == self.queue_url {
            handle
        } else if queue_url == self.retry_url {
            format!("{RETRY_RECEIPT}{handle}")
        } else {
            format!("{PACED_RECEIPT}{handle}")
        }
    }

    /// The queue a receipt belongs to, and SQS's own receipt handle.
    fn queue_of<'a>(&self, receipt: &'a str) -> (&str, &'a str) {
        if let Some(handle) = receipt.strip_prefix(RETRY_RECEIPT) {
            (&self.retry_url, handle)
        } else if let Some(handle) = receipt.strip_prefix(PACED_RECEIPT) {
            (&self.paced_url, handle)
        } else {
            (&self.queue_url, receipt)
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The queue of a lane: the slow lane is the retry queue.
    fn lane_url(&self, lane: Lane) -> &str {
        match lane {
            Lane::First => &self.queue_url,
            Lane::Slow => &self.retry_url,
            Lane::Paced => &self.paced_url,
        }
    }

    /// When a job sent now with `delay` becomes due, if SQS cannot delay it that long: the rest
    /// of the wait rides on the job (a receive before then sends it on again).
    fn not_before(&self, delay: Duration) -> Option<time::OffsetDateTime> {
        (delay > self.max_delay)
            .then(|| time::OffsetDateTime::now_utc() + time::Duration::try_from(delay).unwrap_or(time::Duration::MAX))
    }
}

/// Whole seconds for SQS, rounded up so a short wait never becomes none.
fn seconds(d: Duration, max: Duration) -> i32 {
    d.min(max).as_secs_f64().ceil() as i32
}

/// The queues of the lanes beyond the first, as the delivery function's settings name them
/// (unset: that lane is the delivery queue). Which of them a record came from decides its
/// receipt, so the record is acknowledged on its own queue.
#[derive(Debug, Clone, Default)]
pub struct LaneQueues {
    pub retry_url: Option<String>,
    pub paced_url: Option<String>,
}

impl LaneQueues {
    /// Our receipt for a record an event source delivered from the queue `event_source_arn`
    /// names (an ARN's last part is the queue's name, as its URL's is).
    pub fn receipt(&self, event_source_arn: Option<&str>, handle: String) -> String {
        let name = event_source_arn.and_then(|arn| arn.rsplit(':').next());
        let is = |url: &Option<String>| {
            url.as_deref().and_then(|url| url.rsplit('/').next()).is_some_and(|n| Some(n) == name)
        };
        if is(&self.retry_url) {
            format!("{RETRY_RECEIPT}{handle}")
        } else if is(&self.paced_url) {
            format!("{PACED_RECEIPT}{handle}")
        } else {
            handle
        }
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn enqueue(&self, jobs: &[DeliveryJob], delay: Duration) -> Result<()> {
        if delay > self.max_delay {
            tracing::warn!(delay_s = delay.as_secs(), "SQS delays stop at 15 minutes; enqueuing with the maximum");
        }
        let (ordered, unordered): (Vec<&DeliveryJob>, Vec<&DeliveryJob>) = jobs.iter().partition(|j| j.line.is_some());
        self.send_now(unordered, delay).await?;
        self.join_lines(ordered, delay).await
    }

    async fn leave_line(&self, job: &DeliveryJob) -> Result<()> {
        self.leave(job).await
    }

    async fn in_line(&self, job: &DeliveryJob) -> Result<crate::ports::LinePlace> {
        self.renew_seat(job).await
    }

    async fn sweep_lines(&self) -> Result<usize> {
        self.sweep().await
    }

    fn lateness(&self) -> Duration {
        // Delays are whole seconds, rounded up, and the event source may hold a message up to
        // its batching window (1 s) more: asked back this much early, a job is never late.
        Duration::from_secs(2)
    }

    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<ReceivedJob>> {
        // The delivery queue first, then the retry and paced queues (the Lambda function gets
        // them from their event sources instead).
        let mut jobs = Vec::new();
        let mut urls = vec![&self.queue_url, &self.retry_url, &self.paced_url];
        urls.dedup();
        for url in urls {
            if jobs.len() >= max {
                break;
            }
            let out = self
                .client
                .receive_message()
                .queue_url(url)
                .max_number_of_messages((max - jobs.len()).clamp(1, MAX_BATCH) as i32)
                .visibility_timeout(seconds(visibility, MAX_VISIBILITY))
                .send()
                .await
                .map_err(|e| sdk_error("SQS ReceiveMessage", e))?;
            for message in out.messages.unwrap_or_default() {
                let handle = message.receipt_handle.clone().unwrap_or_default();
                let receipt = self.receipt(url, handle);
                match message.body.as_deref().map(serde_json::from_str::<DeliveryJob>) {
                    Some(Ok(job)) => jobs.push(ReceivedJob::new(receipt, job)),
                    // Left alone: the redrive policy moves it to the dead-letter queue.
                    _ => tracing::error!(
                        sqs_message_id = message.message_id.as_deref(),
                        "SQS message is not a delivery job"
                    ),
                }
            }
        }
        Ok(jobs)
    }

    async fn ack(&self, receipt: &str) -> Result<()> {
        let (queue, handle) = self.queue_of(receipt);
        self.client
            .delete_message()
            .queue_url(queue)
            .receipt_handle(handle)
            .send()
            .await
            .map_err(|e| sdk_error("SQS DeleteMessage", e))?;
        Ok(())
    }

    async fn ack_many(&self, receipts: &[String]) -> Result<()> {
        let (retries, deliveries): (Vec<&String>, Vec<&String>) =
            receipts.iter().partition(|r| r.starts_with(RETRY_RECEIPT));
        for chunk in deliveries.chunks(MAX_BATCH).chain(retries.chunks(MAX_BATCH)) {
            let queue = self.queue_of(chunk[0]).0;
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, receipt)| {
                    aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(self.queue_of(receipt).1)
                        .build()
                        .map_err(Error::internal)
                })
                .collect::<Result<Vec<_>>>()?;
            let out = self
                .client
                .delete_message_batch()
                .queue_url(queue)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| sdk_error("SQS DeleteMessageBatch", e))?;
            if let Some(failed) = out.failed.first() {
                return Err(Error::internal(format!(
                    "SQS DeleteMessageBatch failed for {} messages: {}",
                    out.failed.len(),
                    failed.code
                )));
            }
        }
        Ok(())
    }

    async fn retry_later(&self, received: &ReceivedJob, delay: Duration) -> Result<()> {
        // A new message carries the job with its attempt counted (SQS messages cannot change);
        // the received one is then finished. Waits beyond SQS's 15-minute delay ride on
        // `not_before`: a receive before then sends it on again.
        self.client
            .send_message()
            .queue_url(self.lane_url(Lane::Slow))
            .message_body(serde_json::to_string(&received.job.next_attempt(self.not_before(delay)))?)
            .delay_seconds(seconds(delay, self.max_delay))
            .send()
            .await
            .map_err(|e| sdk_error("SQS SendMessage (retry)", e))?;
        Ok(())
    }

    async fn defer(&self, receipt: &str, delay: Duration) -> Result<()> {
        // Only the visibility changes: the job's attempts are its own, whatever SQS counts. The
        // local worker's short waits for a share only; a scheduled wait is put off instead.
        let (queue, handle) = self.queue_of(receipt);
        self.client
            .change_message_visibility()
            .queue_url(queue)
            .receipt_handle(handle)
            .visibility_timeout(seconds(delay, MAX_DEFER))
            .send()
            .await
            .map_err(|e| sdk_error("SQS ChangeMessageVisibility", e))?;
        Ok(())
    }

    async fn put_off(&self, _received: &ReceivedJob, job: &DeliveryJob, delay: Duration) -> Result<()> {
        // A new message, whose receive count starts again: hiding the received one instead
        // would count every put-off towards the redrive policy. The received copy is then
        // deleted (the Lambda reports it done).
        let job = DeliveryJob { not_before: self.not_before(delay), ..job.clone() };
        self.client
            .send_message()
            .queue_url(self.lane_url(job.lane))
            .message_body(serde_json::to_string(&job)?)
            .delay_seconds(seconds(delay, self.max_delay))
            .send()
            .await
            .map_err(|e| sdk_error("SQS SendMessage (put off)", e))?;
        Ok(())
    }

    async fn dead_letter(&self, receipt: &str, job: &DeliveryJob) -> Result<()> {
        // Copy first, then delete: a crash in between leaves a duplicate, never a loss.
        self.send_dead_letter(job).await?;
        self.ack(receipt).await
    }

    async fn redrive_dead_letters(&self, limit: usize) -> Result<usize> {
        self.redrive(limit).await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeliveryJob>> {
        self.peek_dead_letters(limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_near_twelve_hours_is_hidden_for_less_than_the_limit_counted_from_the_receive() {
        // The schedule's 10 h step with +20 % jitter.
        let wait = Duration::from_secs(12 * 60 * 60);
        let hidden = seconds(wait, MAX_DEFER);
        assert!(hidden < 12 * 60 * 60 - 5 * 60, "{hidden} s");
        assert_eq!(seconds(Duration::from_secs(90), MAX_DEFER), 90);
    }
}
