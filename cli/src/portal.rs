//! `tidings portal-link`: a link to the organization's portal, for an integrator to open once.

use clap::Args;
use tidings::api::session;
use tidings::domain::{utc_timestamp, OrganizationId, Scope};
use time::OffsetDateTime;

use crate::parse::{parse_org, parse_scope};
use crate::stores::{open_store, StoreArgs};

#[derive(Args)]
pub(crate) struct PortalLinkArgs {
    #[command(flatten)]
    data: StoreArgs,
    /// The organization the portal shows.
    #[arg(long, value_parser = parse_org)]
    org: OrganizationId,
    /// A scope the portal may see and manage subscriptions of; repeat for each [default: every
    /// scope, so every subscription].
    #[arg(long = "scope", value_parser = parse_scope)]
    scopes: Vec<Scope>,
    /// How long the session lasts once the link is opened (the link opens within 15 minutes, or
    /// this if shorter), from 1s to 24h.
    #[arg(long, default_value = "1h", value_parser = tidings::config::positive_duration)]
    ttl: std::time::Duration,
    /// Where the stack is reached: `tidings serve`'s address, or the deployed API's URL (with
    /// its stage).
    #[arg(long, env = "TIDINGS_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
}

pub(crate) async fn portal_link(args: PortalLinkArgs) -> Result<(), String> {
    let ttl = time::Duration::try_from(args.ttl).map_err(|e| e.to_string())?;
    if ttl < session::MIN_SESSION || ttl > session::MAX_SESSION {
        return Err(format!("--ttl must be from 1s to 24h, not {}", humantime::format_duration(args.ttl)));
    }
    let scopes = if args.scopes.is_empty() { Scope::every().to_vec() } else { args.scopes };
    let store = open_store(&args.data).await?;
    let secret = session::stored_secret(&*store).await.map_err(|e| e.to_string())?;
    let (code, link) = session::new_link(&secret, args.org, scopes, ttl, OffsetDateTime::now_utc());
    println!("# opens once, until {}", utc_timestamp(link.expiry()));
    println!("{}/portal/open?code={code}", args.url.trim_end_matches('/'));
    Ok(())
}
