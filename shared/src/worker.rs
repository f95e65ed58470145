//! The local delivery worker of `tidings serve`: takes due jobs from the embedded queue in
//! batches and runs the shared delivery routine on them concurrently.

use std::future::Future;
use std::time::Duration;

use crate::delivery::{self, Disposition};
use crate::App;

/// Jobs taken per queue read.
pub const BATCH: usize = 256;
/// Deliveries in flight at once.
pub const CONCURRENCY: usize = 128;
/// How long a taken job stays hidden: longer than any delivery (timeout 10 s) plus bookkeeping.
pub const VISIBILITY: Duration = Duration::from_secs(60);
/// The longest sleep between reads when idle (delayed retries become due meanwhile).
pub const IDLE_POLL: Duration = Duration::from_millis(100);

/// Runs until `shutdown` completes; jobs being delivered then are finished first.
pub async fn run(app: App, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let jobs = match app.queue.receive(BATCH, VISIBILITY).await {
            Ok(jobs) => jobs,
            Err(err) => {
                tracing::error!(error = %err, "cannot read the delivery queue");
                Vec::new()
            }
        };
        if jobs.is_empty() {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = app.worker_wake.notified() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
            }
            continue;
        }
        let results = delivery::process_batch(&app, &jobs, CONCURRENCY).await;
        let mut finished = Vec::new();
        for (received, result) in jobs.iter().zip(results) {
            match result {
                // Dead letters already left the queue; retries wait on it.
                Ok(Disposition::Delivered | Disposition::Skipped(_)) => finished.push(received.receipt.clone()),
                Ok(_) => {}
                // Left hidden: it comes back when its visibility runs out.
                Err(err) => {
                    tracing::error!(message_id = %received.job.message_id, error = %err, "delivery failed to run")
                }
            }
        }
        if let Err(err) = app.queue.ack_many(&finished).await {
            tracing::error!(error = %err, "cannot acknowledge delivered jobs");
        }
    }
}
