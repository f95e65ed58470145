//! The local delivery worker of `tidings serve`: takes due jobs from the embedded queue in
//! batches and runs the shared delivery routine on them concurrently.

use std::future::Future;
use std::time::Duration;

use futures::stream::{self, StreamExt};

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
        stream::iter(jobs)
            .for_each_concurrent(CONCURRENCY, |received| {
                let app = &app;
                async move {
                    match delivery::process(app, &received).await {
                        Ok(disposition) if disposition.is_finished() && disposition != Disposition::DeadLettered => {
                            if let Err(err) = app.queue.ack(&received.receipt).await {
                                tracing::error!(error = %err, "cannot acknowledge a delivered job");
                            }
                        }
                        Ok(_) => {}
                        // Left hidden: it comes back when its visibility runs out.
                        Err(err) => tracing::error!(message_id = %received.job.message_id, error = %err, "delivery failed to run"),
                    }
                }
            })
            .await;
    }
}
