//! Lambda for subscription management of every dialect and attempts: API Gateway (REST or HTTP
//! API) events into the shared router; the routes that queue deliveries answer 404 here.
//! Wiring only; the behaviour lives in the `tidings` crate.

use lambda_http::{run, service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tidings::lambda::init_tracing();
    // Built once per cold start: clients, connection pools and configuration.
    let app = tidings::App::from_settings(&tidings::config::Settings::from_env()?).await?;
    let app = &app;
    run(service_fn(move |request: Request| {
        tidings::lambda::handle_http(app, tidings::api::Routes::Subscriptions, request)
    }))
    .await
}
