//! The dead-letter queue: its jobs read without taking them, and moved back for a replay.

use std::collections::HashSet;

use super::{SqsQueue, MAX_BATCH};
use crate::aws::sdk::sdk_error;
use crate::domain::DeliveryJob;
use crate::Result;

impl SqsQueue {
    /// Moves up to `limit` dead letters back onto the queue (see `Queue::redrive_dead_letters`).
    pub(super) async fn redrive(&self, limit: usize) -> Result<usize> {
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
                match message.body.as_deref().map(serde_json::from_str::<DeliveryJob>) {
                    // Replayed with a full schedule ahead of it: an ordered head SQS's redrive
                    // moved here takes its seat back, any other ordered job joins its line's end.
                    Some(Ok(job)) => self.replay(job).await?,
                    Some(Err(_)) => {
                        self.client
                            .send_message()
                            .queue_url(&self.queue_url)
                            .message_body(message.body.clone().unwrap_or_default())
                            .send()
                            .await
                            .map_err(|e| sdk_error("SQS SendMessage", e))?;
                    }
                    None => {}
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

    /// Up to `limit` dead letters, left where they are (see `Queue::dead_letters`).
    pub(super) async fn peek_dead_letters(&self, limit: usize) -> Result<Vec<DeliveryJob>> {
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
