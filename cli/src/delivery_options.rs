//! `tidings delivery-options`: show or set a subscription's rate limit, ordering and filter.

use clap::Args;
use tidings::domain::{DeliveryOptions, EventFilter, RateLimit, Transformation};
use time::OffsetDateTime;

use crate::stores::SubscriptionArgs;

#[derive(Args)]
pub(crate) struct DeliveryOptionsArgs {
    #[command(flatten)]
    subscription: SubscriptionArgs,
    /// At most this many requests a second to its endpoint (0: no limit).
    #[arg(long)]
    rate: Option<u32>,
    /// Requests beyond the rate any span may hold (default: a tenth of the rate, at least 1).
    #[arg(long, requires = "rate")]
    burst: Option<u32>,
    /// Deliver messages of one ordering key one at a time, in publish order (`--ordered false`
    /// to stop).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    ordered: Option<bool>,
    /// Send only messages this EventBridge event pattern matches, e.g.
    /// '{"payload": {"amount": [{"numeric": [">", 100]}]}}' ("" to send every message).
    #[arg(long)]
    filter: Option<String>,
    /// Send what this EventBridge input transformer makes of each message, e.g.
    /// '{"inputPathsMap": {"total": "$.payload.amount"}, "inputTemplate": "{\"total\": <total>}"}'
    /// ("" to send payloads as published).
    #[arg(long)]
    transform: Option<String>,
}

/// Prints the options; with `--rate`, `--ordered`, `--filter` or `--transform`, changes those
/// first (the rest stay).
pub(crate) async fn delivery_options(args: DeliveryOptionsArgs) -> Result<(), String> {
    let (store, queue, current) = args.subscription.open_with_queue().await?;
    let mut options = current.delivery.clone();
    if let Some(rate) = args.rate {
        options.rate_limit = match rate {
            0 => None,
            rate => Some(RateLimit::new(rate, args.burst)?),
        };
    }
    if let Some(ordered) = args.ordered {
        options.ordered = ordered;
    }
    if let Some(filter) = args.filter {
        options.filter = match filter.trim() {
            "" => None,
            given => Some(
                EventFilter::parse(&serde_json::Value::String(given.to_owned()))
                    .map_err(|why| format!("--filter {why}"))?,
            ),
        };
    }
    if let Some(transform) = args.transform {
        options.transformation = match transform.trim() {
            "" => None,
            given => Some(
                Transformation::parse(&serde_json::Value::String(given.to_owned()))
                    .map_err(|why| format!("--transform {why}"))?,
            ),
        };
    }
    let limit_before = current.delivery.rate_limit;
    let options = if options == current.delivery {
        options
    } else {
        tidings::subscriptions::set_delivery_options(
            &*store,
            queue.as_deref(),
            OffsetDateTime::now_utc(),
            current,
            options,
        )
        .await
        .map_err(|e| e.to_string())?
        .delivery
    };
    println!("{}", describe(&options));
    if options.rate_limit != limit_before {
        println!("messages already waiting follow the new limit within 2 s");
    }
    Ok(())
}

fn describe(options: &DeliveryOptions) -> String {
    let rate = match options.rate_limit {
        Some(limit) => format!("rate limit {}/s (burst {})", limit.per_second, limit.burst),
        None => "no rate limit".to_owned(),
    };
    let order = if options.ordered { "ordered by key" } else { "unordered" };
    let filter = match &options.filter {
        Some(filter) => format!("filter {}", filter.text()),
        None => "no filter".to_owned(),
    };
    let transformation = match &options.transformation {
        Some(t) => format!("transformation {}", serde_json::to_string(t).unwrap_or_default()),
        None => "no transformation".to_owned(),
    };
    format!("{rate}, {order}, {filter}, {transformation}")
}
