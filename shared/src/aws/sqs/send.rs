//! Sending to SQS: jobs in batches of at most 10 messages and 256 KiB, each to its lane's
//! queue, and single dead letters.

use std::time::Duration;

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use super::{seconds, SqsQueue, MAX_BATCH};
use crate::aws::sdk::sdk_error;
use crate::domain::{DeliveryJob, Lane};
use crate::{Error, Result};

/// The total size SQS accepts in one SendMessageBatch (and one message).
const MAX_BATCH_BYTES: usize = 256 * 1024;

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

impl SqsQueue {
    /// Sends jobs now, each in its lane.
    pub(super) async fn send_now(&self, jobs: Vec<&DeliveryJob>, delay: Duration) -> Result<()> {
        for lane in [Lane::First, Lane::Slow, Lane::Paced] {
            let bodies =
                jobs.iter().filter(|j| j.lane == lane).map(serde_json::to_string).collect::<Result<Vec<_>, _>>()?;
            for chunk in batches(bodies) {
                self.send_batch(self.lane_url(lane), &chunk, delay).await?;
            }
        }
        Ok(())
    }

    /// One SendMessageBatch of at most 10 bodies.
    async fn send_batch(&self, queue_url: &str, bodies: &[String], delay: Duration) -> Result<()> {
        let entries = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .delay_seconds(seconds(delay, self.max_delay))
                    .build()
                    .map_err(Error::internal)
            })
            .collect::<Result<Vec<_>>>()?;
        let out = self
            .client
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| sdk_error("SQS SendMessageBatch", e))?;
        if let Some(failed) = out.failed.first() {
            return Err(Error::internal(format!(
                "SQS SendMessageBatch refused {} of {} messages: {} {}",
                out.failed.len(),
                bodies.len(),
                failed.code,
                failed.message.as_deref().unwrap_or("")
            )));
        }
        Ok(())
    }

    /// Puts a job on the dead-letter queue.
    pub(super) async fn send_dead_letter(&self, job: &DeliveryJob) -> Result<()> {
        self.client
            .send_message()
            .queue_url(&self.dead_letter_url)
            .message_body(serde_json::to_string(job)?)
            .send()
            .await
            .map_err(|e| sdk_error("SQS SendMessage (dead-letter queue)", e))?;
        Ok(())
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
