//! The local delivery worker of `tidings serve`: takes due jobs from the embedded queue as
//! delivery slots free up and runs the shared delivery routine on each as its own task.
//!
//! One tenant's bad endpoint never holds up another's deliveries:
//! - No batch barrier: a job that finishes is acknowledged and its attempt recorded without
//!   waiting for any other job. Jobs that finish together share one write (a recorder task takes
//!   whatever has finished since its last write).
//! - Fair shares: at most [`PER_SUBSCRIPTION`] deliveries to one subscription are in flight; a
//!   subscription whose last attempt failed is probed with one request at a time until one
//!   succeeds (a half-open circuit). A job over its subscription's share is put back on the queue
//!   for about as long as the share takes to free up, without holding a slot and without counting
//!   as an attempt, so its retry schedule is untouched.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use uuid::Uuid;

use crate::delivery::{self, Disposition};
use crate::domain::OrganizationId;
use crate::ports::{AttemptRecord, ReceivedJob};
use crate::{App, Result};

/// Deliveries in flight at once.
pub const CONCURRENCY: usize = 128;
/// Deliveries in flight to one subscription at once, while its deliveries succeed.
pub const PER_SUBSCRIPTION: usize = 4;
/// Jobs taken per queue read, at most (never more than the free slots).
pub const BATCH: usize = 256;
/// How long a taken job stays hidden: longer than any delivery (timeout 10 s) plus bookkeeping.
/// After a crash, `tidings serve` makes such jobs visible at once on restart instead.
pub const VISIBILITY: Duration = Duration::from_secs(60);
/// The longest sleep between reads when idle (delayed retries become due meanwhile).
pub const IDLE_POLL: Duration = Duration::from_millis(100);
/// The most finished jobs written together.
const RECORD_BATCH: usize = 512;
/// How long a job over its subscription's share waits, at least and at most.
const DEFER_MIN: Duration = Duration::from_millis(50);
const DEFER_MAX: Duration = Duration::from_secs(30);
/// Deliveries in flight when shutting down get this long beyond the delivery timeout to finish;
/// what is still in flight then is delivered again after the restart.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// A job whose attempt is over.
struct Finished {
    received: ReceivedJob,
    outcome: Result<(Disposition, Option<AttemptRecord>)>,
}

type SubscriptionKey = (OrganizationId, Uuid);

/// Each subscription's share of the worker.
#[derive(Default)]
struct Lane {
    in_flight: usize,
    /// The last attempt failed: probe with one request at a time.
    failing: bool,
    /// A running average of how long its attempts take.
    latency: Option<Duration>,
}

impl Lane {
    fn share(&self) -> usize {
        if self.failing {
            1
        } else {
            PER_SUBSCRIPTION
        }
    }
}

#[derive(Default)]
struct Lanes(Mutex<HashMap<SubscriptionKey, Lane>>);

impl Lanes {
    /// Takes a place in the subscription's share, or says how long to put the job off for.
    /// `waiting` counts the jobs of this subscription already put off in this round.
    fn enter(&self, key: SubscriptionKey, waiting: usize) -> std::result::Result<(), Duration> {
        let mut lanes = self.0.lock().expect("lanes lock");
        let lane = lanes.entry(key).or_default();
        if lane.in_flight < lane.share() {
            lane.in_flight += 1;
            return Ok(());
        }
        // About when its turn comes: the jobs ahead of it, a share at a time.
        let latency = lane.latency.unwrap_or(DEFER_MIN);
        let rounds = (waiting / lane.share() + 1) as u32;
        Err((latency * rounds).clamp(DEFER_MIN, DEFER_MAX))
    }

    fn leave(&self, key: SubscriptionKey, outcome: &Result<(Disposition, Option<AttemptRecord>)>) {
        let mut lanes = self.0.lock().expect("lanes lock");
        let Some(lane) = lanes.get_mut(&key) else { return };
        lane.in_flight = lane.in_flight.saturating_sub(1);
        if let Ok((disposition, Some(attempt))) = outcome {
            lane.failing = !matches!(disposition, Disposition::Delivered);
            let latency = Duration::from_millis(attempt.latency_ms);
            lane.latency = Some(match lane.latency {
                Some(average) => (average * 3 + latency) / 4,
                None => latency,
            });
        }
        if lane.in_flight == 0 && !lane.failing {
            lanes.remove(&key);
        }
    }
}

/// Runs until `shutdown` completes; deliveries in flight then get the delivery timeout (plus a
/// little) to finish and be recorded.
pub async fn run(app: App, shutdown: impl Future<Output = ()>) {
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let lanes = Arc::new(Lanes::default());
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
        let mut first_slot = Some(first_slot);
        let mut started = 0;
        let mut waiting: HashMap<SubscriptionKey, usize> = HashMap::new();
        for received in jobs {
            let key = (received.job.organization, received.job.subscription_id);
            let put_off = waiting.entry(key).or_default();
            if let Err(wait) = lanes.enter(key, *put_off) {
                *put_off += 1;
                if let Err(err) = app.queue.defer(&received.receipt, wait).await {
                    tracing::error!(message_id = %received.job.message_id, error = %err, "cannot put a job off");
                }
                continue;
            }
            let slot = match first_slot.take() {
                Some(slot) => slot,
                // Free by construction: only this loop takes slots.
                None => slots.clone().acquire_owned().await.expect("the semaphore is never closed"),
            };
            started += 1;
            let (app, finished, lanes) = (app.clone(), finished_tx.clone(), lanes.clone());
            tokio::spawn(async move {
                let outcome = delivery::attempt(&app, &received).await;
                lanes.leave(key, &outcome);
                let _ = finished.send(Finished { received, outcome });
                drop(slot);
            });
        }
        if started == 0 {
            drop(first_slot);
            tokio::select! {
                _ = &mut shutdown => break,
                _ = app.worker_wake.notified() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
            }
        }
    }
    // Every slot back means every delivery in flight has finished and handed in its outcome.
    let grace = app.http.timeout() + SHUTDOWN_GRACE;
    if tokio::time::timeout(grace, slots.acquire_many(CONCURRENCY as u32)).await.is_err() {
        tracing::warn!("deliveries still in flight at shutdown are delivered again after the restart");
    }
    drop(finished_tx);
    let _ = tokio::time::timeout(grace, recorder).await;
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
