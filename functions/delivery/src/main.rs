//! Lambda for deliveries: SQS batches into the shared delivery routine, with partial batch
//! failure reporting. Wiring only; the behaviour lives in the `tidings` crate.

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tidings::lambda::init_tracing();
    // Built once per cold start: clients, connection pools and configuration.
    let settings = tidings::config::Settings::from_env()?;
    let app = tidings::App::from_settings(&settings).await?;
    let (app, lanes) = (&app, &settings.lane_queues());
    run(service_fn(move |event: LambdaEvent<SqsEvent>| tidings::lambda::handle_sqs(app, lanes, event))).await
}
