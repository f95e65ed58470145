//! Lambda for the routes that queue deliveries (publish, Lagerkoll execute, replay): API Gateway
//! (REST or HTTP API) events into the shared router, other routes answering 404 here; and the
//! publish queue's SQS batches, each record one publish. Wiring only; the behaviour lives in
//! the `tidings` crate.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::value::RawValue;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tidings::lambda::init_tracing();
    // Built once per cold start: clients, connection pools and configuration.
    let settings = tidings::config::Settings::from_env()?;
    let app = tidings::App::from_settings(&settings).await?;
    let sources = tidings::lambda::PublishSources {
        grants: settings.publish_grants(),
        dead_letters: tidings::aws::SourceDeadLetters::new(&tidings::aws::load_config().await),
    };
    let (app, sources) = (&app, &sources);
    run(service_fn(move |event: LambdaEvent<Box<RawValue>>| tidings::lambda::handle_ingest(app, sources, event))).await
}
