//! What became of a received job: what the queue host does with it next.

use std::time::Duration;

/// Why a copy of an ordered job is skipped: its line moved on without it (it was finished).
pub(super) const LEFT_ITS_LINE: &str = "its line has moved past it (delivered already)";
/// Why a copy of an ordered job is skipped: its place was sent again since (by the line
/// sweeper, or a replay), and the newer copy holds it.
pub(super) const SUPERSEDED: &str = "a newer copy holds its place in its line";

/// What became of a received job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// The destination accepted it; the caller removes it from the queue.
    Delivered,
    /// It failed and comes back after this wait with the attempt counted (already arranged on
    /// the queue); the received copy is finished.
    Retry(Duration),
    /// It was moved, intact, to the dead-letter queue (already done).
    DeadLettered,
    /// Nothing to deliver (the subscription was deleted, the message is no longer kept); the
    /// caller removes it from the queue.
    Skipped(&'static str),
    /// Put off without an attempt (not due yet, its failing endpoint is being probed, its claim
    /// is not written yet, or it moved to the slow lane): back on the queue after this wait as a new
    /// message (already arranged); the received copy is finished.
    PutOff(Duration),
}

impl Disposition {
    /// Whether the job is finished with, so the next job of its line may go: delivered,
    /// dead-lettered, or skipped. A copy its line had moved past leaves again too: leaving is
    /// idempotent, and it sends the line's next job if the first leave could not. A superseded
    /// copy does not: its place is the newer copy's.
    pub(crate) fn frees_line(&self) -> bool {
        match self {
            Disposition::Skipped(why) => *why != SUPERSEDED,
            Disposition::Delivered | Disposition::DeadLettered => true,
            Disposition::Retry(_) | Disposition::PutOff(_) => false,
        }
    }
}
