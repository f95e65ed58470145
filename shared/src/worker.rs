//! The local delivery worker of `tidings serve`: takes due jobs from the embedded queue as
//! delivery slots free up and runs the shared delivery routine on each as its own task.
//!
//! No batch barrier: a job that finishes is acknowledged and its attempt recorded without
//! waiting for any other job. Jobs that finish together share one write (a recorder task takes
//! whatever has finished since its last write), so a slow receiver never holds back the
//! bookkeeping of fast ones, and a crash re-sends only the few jobs whose write was pending.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};

use crate::delivery::{self, Disposition};
use crate::ports::{AttemptRecord, ReceivedJob};
use crate::{App, Result};

/// Deliveries in flight at once.
pub const CONCURRENCY: usize = 128;
/// Jobs taken per queue read, at most (never more than the free slots).
pub const BATCH: usize = 256;
/// How long a taken job stays hidden: longer than any delivery (timeout 10 s) plus bookkeeping.
/// After a crash, `tidings serve` makes such jobs visible at once on restart instead.
pub const VISIBILITY: Duration = Duration::from_secs(60);
/// The longest sleep between reads when idle (delayed retries become due meanwhile).
pub const IDLE_POLL: Duration = Duration::from_millis(100);
/// The most finished jobs written together.
const RECORD_BATCH: usize = 512;

/// A job whose attempt is over.
struct Finished {
    received: ReceivedJob,
    outcome: Result<(Disposition, Option<AttemptRecord>)>,
}

/// Runs until `shutdown` completes; jobs being delivered then are finished and recorded first.
pub async fn run(app: App, shutdown: impl Future<Output = ()>) {
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let (finished_tx, finished_rx) = mpsc::unbounded_channel::<Finished>();
    let recorder = tokio::spawn(record(app.clone(), finished_rx));
    tokio::pin!(shutdown);
    loop {
        // A free slot first, so jobs are taken only when they can start at once.
        let first_slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let free = slots.available_permits() + 1;
        let jobs = match app.queue.receive(free.min(BATCH), VISIBILITY).await {
            Ok(jobs) => jobs,
            Err(err) => {
                tracing::error!(error = %err, "cannot read the delivery queue");
                Vec::new()
            }
        };
        if jobs.is_empty() {
            drop(first_slot);
            tokio::select! {
                _ = &mut shutdown => break,
                _ = app.worker_wake.notified() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
            }
            continue;
        }
        let mut first_slot = Some(first_slot);
        for received in jobs {
            let slot = match first_slot.take() {
                Some(slot) => slot,
                // Free by construction: only this loop takes slots.
                None => slots.clone().acquire_owned().await.expect("the semaphore is never closed"),
            };
            let (app, finished) = (app.clone(), finished_tx.clone());
            tokio::spawn(async move {
                let outcome = delivery::attempt(&app, &received).await;
                let _ = finished.send(Finished { received, outcome });
                drop(slot);
            });
        }
    }
    // Every slot back means every delivery in flight has finished and handed in its outcome.
    let _ = slots.acquire_many(CONCURRENCY as u32).await;
    drop(finished_tx);
    let _ = recorder.await;
}

/// Writes the outcomes of finished jobs: their attempts in one write, the acknowledgements of
/// delivered and skipped jobs in another, for whatever finished since the last write.
async fn record(app: App, mut finished: mpsc::UnboundedReceiver<Finished>) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while finished.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        let mut attempts = Vec::with_capacity(batch.len());
        let mut done = Vec::with_capacity(batch.len());
        for Finished { received, outcome } in batch.drain(..) {
            match outcome {
                Ok((disposition, attempt)) => {
                    attempts.extend(attempt);
                    // Dead letters already left the queue; retries wait on it.
                    if matches!(disposition, Disposition::Delivered | Disposition::Skipped(_)) {
                        done.push(received.receipt);
                    }
                }
                // Left hidden: it comes back when its visibility runs out.
                Err(err) => {
                    tracing::error!(message_id = %received.job.message_id, error = %err, "delivery failed to run")
                }
            }
        }
        if !attempts.is_empty() {
            if let Err(err) = app.store.record_attempts(&attempts).await {
                // The deliveries happened; only their log entries are lost.
                tracing::error!(error = %err, attempts = attempts.len(), "cannot record delivery attempts");
            }
        }
        if !done.is_empty() {
            if let Err(err) = app.queue.ack_many(&done).await {
                tracing::error!(error = %err, "cannot acknowledge delivered jobs");
            }
        }
    }
}
