//! The delivery routine, shared by the SQS-triggered Lambda and the local worker of
//! `tidings serve`: one received job → one signed POST → the attempt recorded → delivered,
//! retried later, or dead-lettered with an alert.
//!
//! An attempt runs in three typed stages: [`prepare`] (due, its records, its provenance, the
//! probe gate: any "no" finishes it without a request) → [`dispatch`] (the signed request and
//! its answer, no decisions) → [`settle`] (what the answer means for the job and the
//! subscription). The batch around them records every attempt in one write.

pub(crate) mod alerts;
mod dispatch;
mod disposition;
mod prepare;
mod probe_gate;
mod provenance;
mod rate_gate;
mod settle;
pub(crate) mod webhook;

pub use dispatch::probe;
pub use disposition::Disposition;
pub use provenance::{Provenance, CLAIM_WAIT};
pub use webhook::{build, payload_for, send, Attempt, Webhook};

use prepare::Prepared;

use crate::domain::AttemptRecord;
use crate::ports::ReceivedJob;
use crate::{App, Error, Result};

/// What became of one job, and the attempt to record if a request was made.
type Outcome = Result<(Disposition, Option<AttemptRecord>)>;

/// Processes received jobs, up to `concurrency` at once, and records all their attempts in
/// one write. Results come in the order of `jobs`. Retries and dead letters are arranged on
/// the queue here; removing a delivered or skipped job is the caller's part (the local worker
/// acknowledges it, the Lambda lets SQS delete it by reporting success).
pub(crate) async fn process_batch(app: &App, jobs: &[ReceivedJob], concurrency: usize) -> Vec<Result<Disposition>> {
    use futures::stream::{self, StreamExt};
    // The futures are made up front, so the stream only polls them (no closure over borrows).
    // Unordered: a job that takes the whole timeout never keeps the next ones from starting.
    let attempts: Vec<_> =
        jobs.iter().enumerate().map(|(i, received)| async move { (i, attempt(app, received).await) }).collect();
    let mut outcomes: Vec<(usize, Outcome)> =
        stream::iter(attempts).buffer_unordered(concurrency.max(1)).collect().await;
    outcomes.sort_by_key(|(i, _)| *i);
    let outcomes: Vec<Outcome> = outcomes.into_iter().map(|(_, o)| o).collect();
    let records: Vec<AttemptRecord> =
        outcomes.iter().filter_map(|o| o.as_ref().ok().and_then(|(_, r)| r.clone())).collect();
    record_batch(app, &records).await;
    outcomes.into_iter().map(|o| o.map(|(disposition, _)| disposition)).collect()
}

/// What a batch of attempts leaves behind, on every host: its metrics, one log line for its
/// successes, and the attempts in the store (in one write).
pub(crate) async fn record_batch(app: &App, records: &[AttemptRecord]) {
    crate::metrics::deliveries(records);
    log_delivered(records);
    if !records.is_empty() {
        if let Err(err) = app.store.record_attempts(records).await {
            // The deliveries happened; only their log entries are lost.
            tracing::error!(error = %err, attempts = records.len(), "cannot record delivery attempts");
        }
    }
}

/// One line for a batch's successful attempts (each failure has a line of its own), naming
/// each as `<subscription>/<message id>#<attempt>`, so a message is still found by its id.
fn log_delivered(records: &[AttemptRecord]) {
    let delivered: Vec<String> = records
        .iter()
        .filter(|r| r.delivered())
        .map(|r| format!("{}/{}#{}", r.subscription_id, r.message_id, r.attempt))
        .collect();
    if !delivered.is_empty() {
        tracing::info!(count = delivered.len(), deliveries = delivered.join(" "), "delivered");
    }
}

/// Processes one received job (see [`process_batch`]).
pub async fn process(app: &App, received: &ReceivedJob) -> Result<Disposition> {
    process_batch(app, std::slice::from_ref(received), 1).await.pop().expect("one job, one result")
}

/// One attempt: the disposition, and the attempt to record if a request was made. Retries and
/// dead letters are arranged on the queue; recording the attempt and removing a delivered or
/// skipped job are the caller's part, so callers can group those writes. Every line logged
/// during the attempt carries what an operator follows a message by, on every host.
pub async fn attempt(app: &App, received: &ReceivedJob) -> Result<(Disposition, Option<AttemptRecord>)> {
    let job = &received.job;
    let span = tracing::info_span!(
        "delivery",
        org = %job.organization,
        subscription = %job.subscription_id,
        message_id = %job.message_id,
        attempt = received.number(),
    );
    tracing::Instrument::instrument(attempt_unlogged(app, received), span).await
}

async fn attempt_unlogged(app: &App, received: &ReceivedJob) -> Result<(Disposition, Option<AttemptRecord>)> {
    let (outcome, record) = match prepare::prepare(app, received).await {
        Ok(Prepared::Ready(pending)) => {
            let completed = dispatch::dispatch(app, received, &pending).await;
            let record = completed.record(received);
            (settle::settle(app, received, *pending, &completed).await, Some(record))
        }
        Ok(Prepared::Done(disposition)) => (Ok(disposition), None),
        Err(err) => (Err(err), None),
    };
    let disposition = match outcome {
        Err(Error::Refused(reason)) => settle::dead_letter_refused(app, received, &reason).await?,
        other => other?,
    };
    // Whether this attempt was the message's last (until a replay): health by messages.
    let record = record.map(|r| AttemptRecord { dead_lettered: disposition == Disposition::DeadLettered, ..r });
    if received.job.line.is_some() && disposition.frees_line() {
        // The job is finished whatever happens to its seat: reporting it failed would offer it
        // again, and a delivered one would be POSTed twice. A seat left behind holds its line
        // until the line moves again (see `Queue::leave_line`).
        if let Err(err) = app.queue.leave_line(&received.job).await {
            crate::metrics::line_not_left();
            tracing::error!(error = %err, "finished, but its seat in its ordered line could not be released: the line waits");
        }
    }
    Ok((disposition, record))
}
