//! `tidings attempts` and `tidings replay`: a subscription's attempts, and delivering again.

use clap::Args;
use tidings::domain::{utc_timestamp, OrganizationId};
use uuid::Uuid;

use crate::parse::{parse_org, parse_uuid};
use crate::stores::{open_stack, open_store, StackArgs, StoreArgs};

#[derive(Args)]
pub(crate) struct AttemptsArgs {
    #[command(flatten)]
    stack: StoreArgs,
    /// The subscription's organization.
    #[arg(long, value_parser = parse_org)]
    org: OrganizationId,
    /// The subscription's uuid.
    #[arg(long, value_parser = parse_uuid)]
    subscription: Uuid,
    /// How many attempts to show.
    #[arg(long, default_value_t = 20)]
    limit: usize,
}

#[derive(Args)]
pub(crate) struct ReplayArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// The subscription's organization.
    #[arg(long, value_parser = parse_org, required_unless_present = "dead_letters")]
    org: Option<OrganizationId>,
    /// The subscription to deliver to.
    #[arg(long, value_parser = parse_uuid, required_unless_present = "dead_letters")]
    subscription: Option<Uuid>,
    /// The message id to deliver again (kept 7 days after it was published).
    #[arg(long, required_unless_present = "dead_letters")]
    message: Option<String>,
    /// Instead: move every dead-lettered job back onto the delivery queue.
    #[arg(long, conflicts_with_all = ["org", "subscription", "message"])]
    dead_letters: bool,
}

pub(crate) async fn attempts(args: AttemptsArgs) -> Result<(), String> {
    let store = open_store(&args.stack).await?;
    if store.get_subscription(args.org, args.subscription).await.map_err(|e| e.to_string())?.is_none() {
        return Err(format!("no subscription {} in organization {}", args.subscription, args.org));
    }
    let attempts = store.recent_attempts(args.org, args.subscription, args.limit).await.map_err(|e| e.to_string())?;
    println!("{:<27}  {:>3}  {:<6}  {:>7}  {:<36}  RESULT", "AT", "#", "STATUS", "MS", "MESSAGE");
    for a in attempts {
        let status = a.status.map(|s| s.to_string()).unwrap_or_else(|| "-".into());
        let result = match (&a.error, a.status) {
            (Some(error), _) => error.clone(),
            (None, Some(s)) if (200..300).contains(&s) => "delivered".into(),
            (None, _) => a.response_excerpt.chars().take(80).collect::<String>().replace('\n', " "),
        };
        println!(
            "{:<27}  {:>3}  {:<6}  {:>7}  {:<36}  {}",
            utc_timestamp(a.at),
            a.attempt,
            status,
            a.latency_ms,
            a.message_id,
            result
        );
    }
    Ok(())
}

pub(crate) async fn replay(args: ReplayArgs) -> Result<(), String> {
    let app = open_stack(&args.stack).await?;
    if args.dead_letters {
        let moved = app.queue.redrive_dead_letters(usize::MAX).await.map_err(|e| e.to_string())?;
        println!("Moved {moved} dead-lettered deliveries back onto the queue");
        return Ok(());
    }
    let (org, subscription, message) =
        (args.org.expect("required"), args.subscription.expect("required"), args.message.expect("required"));
    tidings::ingest::replay(&app, org, subscription, &message, None).await.map_err(|e| e.to_string())?;
    println!("Queued message {message} for subscription {subscription}");
    Ok(())
}
