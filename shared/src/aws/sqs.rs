//! The delivery queue on SQS, with a dead-letter queue.
//!
//! The receipt is the SQS receipt handle; the receive count is SQS's
//! `ApproximateReceiveCount`. Delays up to 15 minutes ride on `DelaySeconds`; a retry waits by
//! changing the message's visibility (up to 12 hours), so nothing busy-loops. The main queue's
//! redrive policy is the safety net: a message that keeps failing without being dead-lettered
//! explicitly (a crash, a poison message) still reaches the DLQ after `maxReceiveCount`.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::{MessageSystemAttributeName, SendMessageBatchRequestEntry};
use aws_sdk_sqs::Client;

use super::sdk_error;
use crate::ports::{DeliveryJob, Queue, ReceivedJob};
use crate::{Error, Result};

/// SQS's limits.
pub const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);
pub const MAX_BATCH: usize = 10;
/// The total size SQS accepts in one SendMessageBatch (and one message).
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

/// Splits message bodies into SendMessageBatch calls: at most 10 entries and 256 KiB each.
fn batches(bodies: Vec<String>) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut size = 0;
    for body in bodies {
        let fits = out.last().is_some_and(|b| b.len() < MAX_BATCH && size + body.len() <= MAX_BATCH_BYTES);
        if !fits {
            out.push(Vec::new());
            size = 0;
        }
        size += body.len();
        out.last_mut().expect("a batch was just pushed").push(body);
    }
    out
}

pub struct SqsQueue {
    client: Client,
    queue_url: String,
    dead_letter_url: String,
}

impl SqsQueue {
    pub fn new(client: Client, queue_url: impl Into<String>, dead_letter_url: impl Into<String>) -> Self {
        SqsQueue { client, queue_url: queue_url.into(), dead_letter_url: dead_letter_url.into() }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// Whole seconds for SQS, rounded up so a short wait never becomes none.
fn seconds(d: Duration, max: Duration) -> i32 {
    d.min(max).as_secs_f64().ceil() as i32
}

#[async_trait]
impl Queue for SqsQueue {
    async fn enqueue(&self, jobs: &[DeliveryJob], delay: Duration) -> Result<()> {
        if delay > MAX_DELAY {
            tracing::warn!(delay_s = delay.as_secs(), "SQS delays stop at 15 minutes; enqueuing with the maximum");
        }
        let bodies = jobs.iter().map(serde_json::to_string).collect::<Result<Vec<_>, _>>()?;
        for chunk in batches(bodies) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, body)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .delay_seconds(seconds(delay, MAX_DELAY))
                        .build()
                        .map_err(Error::internal)
                })
                .collect::<Result<Vec<_>>>()?;
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| sdk_error("SQS SendMessageBatch", e))?;
            if let Some(failed) = out.failed.first() {
                return Err(Error::internal(format!(
                    "SQS SendMessageBatch refused {} of {} messages: {} {}",
                    out.failed.len(),
                    chunk.len(),
                    failed.code,
                    failed.message.as_deref().unwrap_or("")
                )));
            }
        }
        Ok(())
    }

    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<ReceivedJob>> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max.clamp(1, MAX_BATCH) as i32)
            .visibility_timeout(seconds(visibility, MAX_VISIBILITY))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| sdk_error("SQS ReceiveMessage", e))?;
        let mut jobs = Vec::new();
        for message in out.messages.unwrap_or_default() {
            let receipt = message.receipt_handle.clone().unwrap_or_default();
            let receive_count = message
                .attributes
                .as_ref()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|c| c.parse().ok())
                .unwrap_or(1);
            match message.body.as_deref().map(serde_json::from_str::<DeliveryJob>) {
                Some(Ok(job)) => jobs.push(ReceivedJob { receipt, job, receive_count }),
                // Left alone: the redrive policy moves it to the dead-letter queue.
                _ => tracing::error!(message = ?message.message_id, "SQS message is not a delivery job"),
            }
        }
        Ok(jobs)
    }

    async fn ack(&self, receipt: &str) -> Result<()> {
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| sdk_error("SQS DeleteMessage", e))?;
        Ok(())
    }

    async fn ack_many(&self, receipts: &[String]) -> Result<()> {
        for chunk in receipts.chunks(MAX_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, receipt)| {
                    aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .build()
                        .map_err(Error::internal)
                })
                .collect::<Result<Vec<_>>>()?;
            let out = self
                .client
                .delete_message_batch()
                .queue_url(&self.queue_url)
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

    async fn retry_later(&self, receipt: &str, delay: Duration) -> Result<()> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(seconds(delay, MAX_VISIBILITY))
            .send()
            .await
            .map_err(|e| sdk_error("SQS ChangeMessageVisibility", e))?;
        Ok(())
    }

    async fn defer(&self, receipt: &str, delay: Duration) -> Result<()> {
        // SQS counts every receive; the attempt number never comes from that count.
        self.retry_later(receipt, delay).await
    }

    async fn dead_letter(&self, receipt: &str, job: &DeliveryJob) -> Result<()> {
        // Copy first, then delete: a crash in between leaves a duplicate, never a loss.
        self.client
            .send_message()
            .queue_url(&self.dead_letter_url)
            .message_body(serde_json::to_string(job)?)
            .send()
            .await
            .map_err(|e| sdk_error("SQS SendMessage (dead-letter queue)", e))?;
        self.ack(receipt).await
    }

    async fn redrive_dead_letters(&self, limit: usize) -> Result<usize> {
        let mut moved = 0;
        while moved < limit {
            let out = self
                .client
                .receive_message()
                .queue_url(&self.dead_letter_url)
                .max_number_of_messages((limit - moved).min(MAX_BATCH) as i32)
                .visibility_timeout(60)
                .send()
                .await
                .map_err(|e| sdk_error("SQS ReceiveMessage (dead-letter queue)", e))?;
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                break;
            }
            for message in messages {
                // Back onto the queue first, then off the DLQ: a crash leaves a duplicate, not a loss.
                if let Some(body) = &message.body {
                    self.client
                        .send_message()
                        .queue_url(&self.queue_url)
                        .message_body(body)
                        .send()
                        .await
                        .map_err(|e| sdk_error("SQS SendMessage", e))?;
                }
                self.client
                    .delete_message()
                    .queue_url(&self.dead_letter_url)
                    .receipt_handle(message.receipt_handle.unwrap_or_default())
                    .send()
                    .await
                    .map_err(|e| sdk_error("SQS DeleteMessage (dead-letter queue)", e))?;
                moved += 1;
            }
        }
        Ok(moved)
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeliveryJob>> {
        // A peek: received with visibility 0 so they stay available for replay.
        let mut seen = HashSet::new();
        let mut jobs = Vec::new();
        while jobs.len() < limit {
            let out = self
                .client
                .receive_message()
                .queue_url(&self.dead_letter_url)
                .max_number_of_messages(MAX_BATCH as i32)
                .visibility_timeout(0)
                .send()
                .await
                .map_err(|e| sdk_error("SQS ReceiveMessage (dead-letter queue)", e))?;
            let mut fresh = 0;
            for message in out.messages.unwrap_or_default() {
                let id = message.message_id.clone().unwrap_or_default();
                if !seen.insert(id) {
                    continue;
                }
                fresh += 1;
                if let Some(Ok(job)) = message.body.as_deref().map(serde_json::from_str::<DeliveryJob>) {
                    jobs.push(job);
                }
            }
            if fresh == 0 {
                break;
            }
        }
        jobs.truncate(limit);
        Ok(jobs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_hold_ten_messages_and_256_kib_at_most() {
        let small: Vec<String> = (0..25).map(|i| format!("{i}")).collect();
        assert_eq!(batches(small).iter().map(Vec::len).collect::<Vec<_>>(), vec![10, 10, 5]);
        let big: Vec<String> = (0..10).map(|_| "x".repeat(100 * 1024)).collect();
        let sizes: Vec<usize> = batches(big).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![2, 2, 2, 2, 2]);
    }
}
