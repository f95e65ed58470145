//! `tidings keys`: create, list and revoke API keys.

use clap::Subcommand;
use tidings::domain::api_key::NewApiKey;
use tidings::domain::{utc_timestamp, OrganizationId, Scope};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::parse::{parse_org, parse_scope, parse_time, parse_uuid};
use crate::stores::{open_store, StoreArgs};

#[derive(Subcommand)]
pub(crate) enum KeysCommand {
    /// Create an API key for an organization; prints the key alone on the last line.
    Create {
        #[command(flatten)]
        data: StoreArgs,
        /// The organization (a UUID) the key belongs to.
        #[arg(long, value_parser = parse_org)]
        org: OrganizationId,
        /// A scope the key carries, e.g. READ:PURCHASE; repeat for several.
        #[arg(long = "scope", value_parser = parse_scope)]
        scopes: Vec<Scope>,
        /// When the key stops working, as RFC 3339 (e.g. 2027-01-01T00:00:00Z).
        #[arg(long, value_parser = parse_time)]
        expires_at: Option<OffsetDateTime>,
        /// Also issue a client id and secret for signing requests the way Metro Markets API
        /// clients do (X-Client-Id, X-Timestamp, X-Signature).
        #[arg(long)]
        metro_client: bool,
    },
    /// List API keys (never the secrets).
    List {
        #[command(flatten)]
        data: StoreArgs,
        /// Only this organization's keys.
        #[arg(long, value_parser = parse_org)]
        org: Option<OrganizationId>,
    },
    /// Revoke an API key by its id (from `keys list`); requests with it then get 401.
    Revoke {
        #[command(flatten)]
        data: StoreArgs,
        /// The key's id.
        #[arg(value_parser = parse_uuid)]
        id: Uuid,
    },
}

pub(crate) async fn manage_keys(command: KeysCommand) -> Result<(), String> {
    match command {
        KeysCommand::Create { data, org, scopes, expires_at, metro_client } => {
            let store = open_store(&data).await?;
            let now = OffsetDateTime::now_utc();
            if expires_at.is_some_and(|at| at <= now) {
                return Err("--expires-at is in the past".into());
            }
            let mut key = NewApiKey::generate(org, scopes, now, expires_at);
            if metro_client {
                key = key.with_client_secret();
            }
            store.put_api_key(&key.record).await.map_err(|e| e.to_string())?;
            let scopes: Vec<&str> = key.record.scopes.iter().map(|s| s.as_str()).collect();
            println!("Created API key {} for organization {org}", key.record.id);
            println!("Scopes: {}", if scopes.is_empty() { "(none)".to_owned() } else { scopes.join(" ") });
            if let Some(at) = key.record.expires_at {
                println!("Expires: {}", utc_timestamp(at));
            }
            if let Some(secret) = &key.record.client_secret {
                println!("Metro request signing: X-Client-Id {}", key.record.client_id());
                println!("Metro client secret (shown only this once): {secret}");
            }
            println!("Send it as \"Authorization: Bearer <key>\". It is shown only this once:");
            println!("{}", key.secret);
            Ok(())
        }
        KeysCommand::List { data, org } => {
            let store = open_store(&data).await?;
            let keys = store.list_api_keys(org).await.map_err(|e| e.to_string())?;
            let now = OffsetDateTime::now_utc();
            println!(
                "{:<36}  {:<36}  {:<8}  {:<27}  {:<27}  SCOPES",
                "ID", "ORGANIZATION", "STATUS", "CREATED", "EXPIRES"
            );
            for key in keys {
                let status = if key.revoked_at.is_some() {
                    "revoked"
                } else if !key.is_usable_at(now) {
                    "expired"
                } else {
                    "active"
                };
                let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
                println!(
                    "{:<36}  {:<36}  {:<8}  {:<27}  {:<27}  {}",
                    key.id,
                    key.organization,
                    status,
                    utc_timestamp(key.created_at),
                    key.expires_at.map(utc_timestamp).unwrap_or_else(|| "-".into()),
                    scopes.join(" ")
                );
            }
            Ok(())
        }
        KeysCommand::Revoke { data, id } => {
            let store = open_store(&data).await?;
            if store.revoke_api_key(id, OffsetDateTime::now_utc()).await.map_err(|e| e.to_string())? {
                println!("Revoked API key {id}");
                Ok(())
            } else {
                Err(format!("no API key with id {id}"))
            }
        }
    }
}
