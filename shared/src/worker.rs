//! The local delivery worker of `tidings serve`: takes due jobs from the embedded queue as its
//! permits (its deliveries in flight, [`CONCURRENCY`]) free up and runs the shared delivery
//! routine on each as its own task.
//!
//! One tenant's bad endpoint never holds up another's deliveries:
//! - No batch barrier: a job that finishes is acknowledged and its attempt recorded without
//!   waiting for any other job. Jobs that finish together share one write (a recorder task takes
//!   whatever has finished since its last write).
//! - Fair shares: at most [`PER_SUBSCRIPTION`] deliveries to one slow subscription are in
//!   flight ([`FAST_SHARE`] to one whose deliveries take under [`SLOW`]); a subscription whose
//!   last attempt failed is probed with one request at a time until one succeeds (a half-open
//!   circuit). A job over its subscription's share waits in the share's waiting list without
//!   holding a permit, and starts on the permit of the subscription's next finished delivery; when
//!   the list is as long as can start before the job's visibility runs out, the job goes back on
//!   the queue for about as long instead. Either way no attempt is counted.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use uuid::Uuid;

use crate::delivery::{self, Disposition};
use crate::domain::{AttemptRecord, OrganizationId};
use crate::ports::ReceivedJob;
use crate::{App, Result};

/// Deliveries in flight at once.
const CONCURRENCY: usize = 128;
/// Deliveries in flight to one subscription at once, while its deliveries succeed but are slow
/// (or their speed is not known yet).
pub const PER_SUBSCRIPTION: usize = 4;
/// Deliveries in flight to one subscription whose deliveries are fast: a quarter of the worker.
const FAST_SHARE: usize = CONCURRENCY / 4;
/// Deliveries that take this long or longer make a subscription slow.
const SLOW: Duration = Duration::from_millis(100);
/// Jobs waiting in one subscription's share should all start within this (inside the
/// [`visibility`], so none is received twice).
const WAIT_HORIZON: Duration = Duration::from_secs(20);
/// Jobs waiting in all shares at once, at most (memory).
const MAX_WAITING: usize = 4096;
/// Jobs taken per queue read, at most (never more than the free permits).
const BATCH: usize = 256;
/// How long a taken job stays hidden, from the delivery timeout: a job may wait in its
/// subscription's share up to [`WAIT_HORIZON`], then take the whole timeout, and three timeouts
/// more are room to record and acknowledge it under load (60 s at the default 10 s). After a
/// crash, `tidings serve` makes such jobs visible at once on restart instead.
pub fn visibility(delivery_timeout: Duration) -> Duration {
    WAIT_HORIZON + delivery_timeout * 4
}
/// The longest sleep between reads when idle (delayed retries become due meanwhile).
const IDLE_POLL: Duration = Duration::from_millis(100);
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
struct Share {
    in_flight: usize,
    /// The last attempt failed: probe with one request at a time.
    failing: bool,
    /// A running average of how long its attempts take.
    latency: Option<Duration>,
    /// Jobs received for it, waiting for a place in its share (holding no permit).
    waiting: std::collections::VecDeque<ReceivedJob>,
}

impl Share {
    /// How many of its deliveries may be in flight at once.
    fn size(&self) -> usize {
        match self.latency {
            _ if self.failing => 1,
            Some(latency) if latency < SLOW => FAST_SHARE,
            _ => PER_SUBSCRIPTION,
        }
    }

    /// How long one delivery is expected to take.
    fn expected_latency(&self) -> Duration {
        self.latency.unwrap_or(DEFER_MIN).max(Duration::from_millis(1))
    }

    /// How many jobs can wait and still all start within [`WAIT_HORIZON`].
    fn waiting_limit(&self) -> usize {
        let per_place = (WAIT_HORIZON.as_millis() / self.expected_latency().as_millis().max(1)) as usize;
        (self.size() * per_place).min(1024)
    }
}

/// What to do with a received job.
enum Admission {
    /// Start it now, on a permit.
    Start(ReceivedJob),
    /// It waits in its subscription's share.
    Waiting,
    /// Its share's waiting list is full: put it back on the queue for this long.
    PutOff(ReceivedJob, Duration),
}

#[derive(Default)]
struct Shares {
    shares: Mutex<HashMap<SubscriptionKey, Share>>,
    /// Jobs waiting across every share.
    waiting: std::sync::atomic::AtomicUsize,
    /// Shutting down: waiting jobs stay where they are (delivered after the restart).
    closing: std::sync::atomic::AtomicBool,
}

impl Shares {
    /// A place in flight in the subscription's share, a place in its waiting list, or a wait on
    /// the queue.
    fn admit(&self, key: SubscriptionKey, job: ReceivedJob) -> Admission {
        let mut shares = self.shares.lock().expect("shares lock");
        let share = shares.entry(key).or_default();
        if share.in_flight < share.size() {
            share.in_flight += 1;
            return Admission::Start(job);
        }
        let waiting = self.waiting.load(std::sync::atomic::Ordering::Relaxed);
        if share.waiting.len() < share.waiting_limit() && waiting < MAX_WAITING {
            share.waiting.push_back(job);
            self.waiting.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Admission::Waiting;
        }
        // About when its turn would come: the jobs waiting ahead of it, a share at a time.
        let rounds = (share.waiting.len() / share.size() + 1) as u32;
        Admission::PutOff(job, (share.expected_latency() * rounds).clamp(DEFER_MIN, DEFER_MAX))
    }

    /// A delivery of the subscription finished: its next waiting job, if its share has room,
    /// takes over the finished delivery's place and permit.
    fn leave(
        &self,
        key: SubscriptionKey,
        outcome: &Result<(Disposition, Option<AttemptRecord>)>,
    ) -> Option<ReceivedJob> {
        let mut shares = self.shares.lock().expect("shares lock");
        let share = shares.get_mut(&key)?;
        share.in_flight = share.in_flight.saturating_sub(1);
        if let Ok((disposition, Some(attempt))) = outcome {
            share.failing = !matches!(disposition, Disposition::Delivered);
            let latency = Duration::from_millis(attempt.latency_ms);
            share.latency = Some(match share.latency {
                Some(average) => (average * 3 + latency) / 4,
                None => latency,
            });
        }
        if share.in_flight < share.size() && !self.closing.load(std::sync::atomic::Ordering::Relaxed) {
            if let Some(next) = share.waiting.pop_front() {
                self.waiting.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                share.in_flight += 1;
                return Some(next);
            }
        }
        if share.in_flight == 0 && !share.failing && share.waiting.is_empty() {
            shares.remove(&key);
        }
        None
    }
}

/// The most rows of each kind one purge pass deletes.
const PURGE_BATCH: usize = 5_000;

/// Keeps the local store to the retention DynamoDB's TTL keeps on AWS: attempts for 30 days,
/// published messages until they expire. A full pass goes again at once, a partial one waits.
async fn purge(app: App) {
    loop {
        match app.store.purge_expired(app.clock.now(), PURGE_BATCH).await {
            Ok(purged) if purged >= PURGE_BATCH => continue,
            Ok(_) => {}
            Err(err) => tracing::error!(error = %err, "cannot purge expired attempts and messages"),
        }
        tokio::time::sleep(app.delivery.purge_every).await;
    }
}

/// Runs until `shutdown` completes; deliveries in flight then get the delivery timeout (plus a
/// little) to finish and be recorded.
pub async fn run(app: App, shutdown: impl Future<Output = ()>) {
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let shares = Arc::new(Shares::default());
    let (finished_tx, finished_rx) = mpsc::unbounded_channel::<Finished>();
    let recorder = tokio::spawn(record(app.clone(), finished_rx));
    let purger = tokio::spawn(purge(app.clone()));
    tokio::pin!(shutdown);
    loop {
        // A free permit first, so jobs are taken only when they can start at once.
        let first_permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let free = permits.available_permits() + 1;
        let jobs = match app.queue.receive(free.min(BATCH), visibility(app.http.timeout())).await {
            Ok(jobs) => jobs,
            Err(err) => {
                tracing::error!(error = %err, "cannot read the delivery queue");
                Vec::new()
            }
        };
        let mut first_permit = Some(first_permit);
        let mut taken = 0;
        for received in jobs {
            let key = (received.job.organization, received.job.subscription_id);
            let received = match shares.admit(key, received) {
                Admission::Start(received) => received,
                Admission::Waiting => {
                    taken += 1;
                    continue;
                }
                Admission::PutOff(received, wait) => {
                    if let Err(err) = app.queue.defer(&received.receipt, wait).await {
                        tracing::error!(message_id = %received.job.message_id, error = %err, "cannot put a job off");
                    }
                    continue;
                }
            };
            let permit = match first_permit.take() {
                Some(permit) => permit,
                // Free by construction: only this loop takes permits.
                None => permits.clone().acquire_owned().await.expect("the semaphore is never closed"),
            };
            taken += 1;
            let (app, finished, shares) = (app.clone(), finished_tx.clone(), shares.clone());
            tokio::spawn(async move {
                // The permit goes on to the subscription's waiting jobs while its share allows.
                let mut next = Some(received);
                while let Some(received) = next {
                    let outcome = delivery::attempt(&app, &received).await;
                    next = shares.leave(key, &outcome);
                    let _ = finished.send(Finished { received, outcome });
                }
                drop(permit);
            });
        }
        if taken == 0 {
            drop(first_permit);
            tokio::select! {
                _ = &mut shutdown => break,
                _ = app.queue.wait_for_jobs(IDLE_POLL) => {}
            }
        }
    }
    // Every permit back means every delivery in flight has finished and handed in its outcome.
    // Waiting jobs start no more; all of it within one deadline.
    shares.closing.store(true, std::sync::atomic::Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + app.http.timeout() + SHUTDOWN_GRACE;
    if tokio::time::timeout_at(deadline, permits.acquire_many(CONCURRENCY as u32)).await.is_err() {
        tracing::warn!("deliveries still in flight at shutdown are delivered again after the restart");
    }
    purger.abort();
    drop(finished_tx);
    // What has finished is recorded; a delivery still running past the deadline is not waited for.
    let _ =
        tokio::time::timeout_at(deadline.max(tokio::time::Instant::now() + Duration::from_millis(500)), recorder).await;
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
        delivery::record_batch(&app, &attempts).await;
        if !done.is_empty() {
            if let Err(err) = app.queue.ack_many(&done).await {
                tracing::error!(error = %err, "cannot acknowledge delivered jobs");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_job_stays_hidden_past_its_longest_line_and_its_delivery() {
        assert_eq!(visibility(crate::destination::DEFAULT_TIMEOUT), Duration::from_secs(60), "the default");
        for timeout in [1, 10, 60, 300].map(Duration::from_secs) {
            assert!(visibility(timeout) >= WAIT_HORIZON + timeout * 2, "{timeout:?}");
        }
        assert!(visibility(Duration::from_secs(120)) > visibility(Duration::from_secs(10)), "grows with the timeout");
    }
}
