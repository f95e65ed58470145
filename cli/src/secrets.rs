//! `tidings secrets`: rotate a subscription's signing key.

use clap::Subcommand;
use tidings::domain::utc_timestamp;
use time::OffsetDateTime;

use crate::stores::SubscriptionArgs;

#[derive(Subcommand)]
pub(crate) enum SecretsCommand {
    /// A new signing key for a subscription of any dialect; the old one keeps signing for the
    /// overlap. Prints the new key alone on the last line.
    Rotate {
        #[command(flatten)]
        subscription: SubscriptionArgs,
        /// How long the old key keeps signing (0s revokes it now; at most 7 days).
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        overlap: std::time::Duration,
    },
}

pub(crate) async fn secrets(command: SecretsCommand) -> Result<(), String> {
    let SecretsCommand::Rotate { subscription, overlap } = command;
    let (store, current) = subscription.open().await?;
    let subscription = current.id;
    let overlap = time::Duration::try_from(overlap).map_err(|e| e.to_string())?;
    let now = OffsetDateTime::now_utc();
    let rotated =
        tidings::subscriptions::rotate_signing_key(&*store, now, current, overlap).await.map_err(|e| e.to_string())?;
    println!("Subscription {subscription}: the previous key signs until {}", utc_timestamp(now + overlap));
    println!("{}", rotated.signing_key);
    Ok(())
}
