//! Ordered delivery on SQS: each key's line lives in the table (`dynamodb::lines`), and only a
//! line's head has a message on the queue. Joining a line, sending its head, leaving it, and the
//! sweep that takes over the heads whose lease lapsed.

use std::sync::Arc;
use std::time::Duration;

use super::SqsQueue;
use crate::aws::dynamodb::lines::LapsedHead;
use crate::aws::DynamoStore;
use crate::domain::DeliveryJob;
use crate::ports::{MessageLog, Queue};
use crate::{Error, Result};

/// The most heads of a shard one sweep takes over.
const SWEEP_LIMIT: usize = 100;
/// A head whose job is lost this many times (a poison message that crashes every invocation,
/// redriven again and again) is dead-lettered by the sweeper, and its line moves on.
const MAX_SWEEPS: u32 = 3;

impl SqsQueue {
    /// Keeps ordered jobs in lines in `store`'s table, so a line's jobs go one at a time.
    pub fn with_lines(mut self, store: Arc<DynamoStore>) -> Self {
        self.lines = Some(store);
        self
    }

    pub(super) fn lines(&self) -> Result<&DynamoStore> {
        self.lines.as_deref().ok_or_else(|| Error::internal("ordered delivery on SQS needs the table for its lines"))
    }

    /// Sends the heads this instance marked `queued`. When the send fails the marks are taken
    /// back, so the next to look at the line (a repeated publish, the job ahead received again)
    /// sends them instead of the line waiting for a send that never comes.
    async fn send_heads(&self, heads: Vec<DeliveryJob>, delay: Duration) -> Result<()> {
        let sent = self.send_now(heads.iter().collect(), delay).await;
        if sent.is_err() {
            for head in &heads {
                if let Err(err) = self.lines()?.unmark_queued(head, time::OffsetDateTime::now_utc()).await {
                    tracing::error!(message_id = %head.message_id, error = %err, "an ordered line's head was marked sent but is not: its line waits");
                }
            }
        }
        sent
    }

    /// Ordered jobs join their lines; each that is its line's head is sent now. A join that
    /// fails stops the loop, but the heads marked before it are still sent (or their marks taken
    /// back): an error never leaves a head marked and unsent.
    pub(super) async fn join_lines(&self, ordered: Vec<&DeliveryJob>, delay: Duration) -> Result<()> {
        let now = time::OffsetDateTime::now_utc();
        let mut heads = Vec::new();
        let mut joined = Ok(());
        for job in ordered {
            match self.lines()?.join_line(job, now, self.line_lease).await {
                Ok(head) => heads.extend(head),
                Err(err) => {
                    joined = Err(err);
                    break;
                }
            }
        }
        self.send_heads(heads, delay).await?;
        joined
    }

    /// A finished job leaves its line; the next seat's job, if any, is sent.
    pub(super) async fn leave(&self, job: &DeliveryJob) -> Result<()> {
        let next = self.lines()?.leave_line(job, time::OffsetDateTime::now_utc(), self.line_lease).await?;
        self.send_heads(next.into_iter().collect(), Duration::ZERO).await
    }

    /// A received job's seat, its lease renewed.
    pub(super) async fn renew_seat(&self, job: &DeliveryJob) -> Result<crate::ports::LinePlace> {
        self.lines()?.renew_seat(job, time::OffsetDateTime::now_utc(), self.line_lease).await
    }

    /// Takes over the heads whose lease lapsed (see `Queue::sweep_lines`).
    pub(super) async fn sweep(&self) -> Result<usize> {
        let lines = self.lines()?;
        let now = time::OffsetDateTime::now_utc();
        let heads = lines.lapsed_heads(now, self.line_lease, SWEEP_LIMIT).await?;
        let stalled = heads.len();
        for head in heads {
            let job = &head.job;
            let span = tracing::warn_span!("line", org = %job.organization, subscription = %job.subscription_id, message_id = %job.message_id);
            // One head's failure leaves the others to be moved: its lease lapses again, and a
            // later sweep tries it again.
            if let Err(err) = tracing::Instrument::instrument(self.move_on(head, now), span).await {
                tracing::error!(error = %err, "a stalled ordered line could not be moved: a later sweep tries again");
            }
        }
        Ok(stalled)
    }

    /// Queues a dead letter again, with a full schedule ahead of it.
    pub(super) async fn replay(&self, job: DeliveryJob) -> Result<()> {
        let fresh = job.fresh();
        if job.line.is_some() && job.seat.is_some() {
            let own_seat = DeliveryJob { seat: job.seat.clone(), ..fresh.clone() };
            let now = time::OffsetDateTime::now_utc();
            if let Some(head) = self.lines()?.reclaim_seat(&own_seat, now, self.line_lease).await? {
                return self.send_heads(vec![head], Duration::ZERO).await;
            }
        }
        self.enqueue(&[fresh], Duration::ZERO).await
    }

    /// Moves on a line whose head the sweep took over (see `Queue::sweep_lines`).
    async fn move_on(&self, head: LapsedHead, now: time::OffsetDateTime) -> Result<()> {
        let job = head.job;
        if self.delivered_already(&job).await? {
            // Its seat could not be released after its delivery: never POSTed again.
            tracing::warn!("an ordered line's head was delivered but kept its seat: the line moves on");
            self.leave_line(&job).await
        } else if head.sweeps > MAX_SWEEPS {
            tracing::error!(
                sweeps = head.sweeps,
                "an ordered line's head lost its job again and again: dead-lettered, the line moves on"
            );
            let until = now + crate::domain::retention::DEAD_LETTER_RETENTION;
            self.lines()?.retain_message(job.organization, &job.message_id, until).await?;
            self.send_dead_letter(&job).await?;
            self.leave_line(&job).await
        } else {
            tracing::warn!(ticket = job.ticket, "an ordered line's head lost its job (its lease lapsed): sent again");
            self.send_heads(vec![job], Duration::ZERO).await
        }
    }

    /// Whether a job's message was delivered to its subscription since it was published (a
    /// head whose seat stayed after its delivery).
    async fn delivered_already(&self, job: &DeliveryJob) -> Result<bool> {
        use crate::ports::{AttemptOutcome, AttemptQuery};
        let query = AttemptQuery {
            since: Some(job.published_at),
            until: None,
            outcome: Some(AttemptOutcome::Delivered),
            event: None,
            message_id: Some(job.message_id.clone()),
            limit: 1,
        };
        Ok(!self.lines()?.attempts(job.organization, job.subscription_id, &query).await?.is_empty())
    }
}
