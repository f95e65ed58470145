//! Lambda for deliveries: SQS batches into the shared delivery routine, with partial batch
//! failure reporting, and the ordered lines' sweep on its schedule. Wiring only; the behaviour
//! lives in the `tidings` crate.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tidings::lambda::init_tracing();
    // Built once per cold start: clients, connection pools and configuration.
    let settings = tidings::config::Settings::from_env()?;
    let app = tidings::App::from_settings(&settings).await?;
    let (app, lanes) = (&app, &settings.lane_queues());
    run(service_fn(move |event: LambdaEvent<serde_json::Value>| tidings::lambda::handle_delivery(app, lanes, event)))
        .await
}
