//! `tidings`: runs the whole stack locally on the embedded adapters and manages API keys.
//! Wiring only; the behaviour lives in the `tidings` crate.

mod deliveries;
mod delivery_options;
mod groups;
mod keys;
mod parse;
mod portal;
mod secrets;
mod serve;
mod stores;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::deliveries::{attempts, replay, AttemptsArgs, ReplayArgs};
use crate::delivery_options::{delivery_options, DeliveryOptionsArgs};
use crate::groups::{groups, GroupsCommand};
use crate::keys::{manage_keys, KeysCommand};
use crate::portal::{portal_link, PortalLinkArgs};
use crate::secrets::{secrets, SecretsCommand};
use crate::serve::{serve, ServeArgs};
use crate::verify::{verify, VerifyArgs};

#[derive(Parser)]
#[command(name = "tidings", version, about = "Tidings webhook platform: local stack and operator tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole API locally on an embedded SQLite file (no AWS account needed).
    Serve(ServeArgs),
    /// Create, list and revoke API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// List a subscription's recent delivery attempts, newest first.
    Attempts(AttemptsArgs),
    /// Deliver a past message to a subscription again, or replay every dead-lettered message.
    Replay(ReplayArgs),
    /// Check a received webhook's signatures (Standard Webhooks, X-iZettle-Signature, Metro's
    /// x-signature).
    Verify(VerifyArgs),
    /// Manage store groups (Lagerkoll's enable_for_group creates a webhook for every store of
    /// the caller's groups).
    #[command(subcommand)]
    Groups(GroupsCommand),
    /// Show or set a subscription's rate limit and ordered delivery.
    DeliveryOptions(DeliveryOptionsArgs),
    /// Rotate a subscription's signing key.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Print a link to the organization's portal: opened once, it shows the organization's
    /// subscriptions, their health and attempts in a browser (no API key reaches it).
    PortalLink(PortalLinkArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => err.exit(), // --help and --version
        Err(err) if err.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprintln!("tidings: a subcommand is required (see --help)");
            return ExitCode::from(2);
        }
        Err(err) => {
            // One line: clap's first paragraph says what was wrong.
            let rendered = err.to_string();
            let reason: Vec<&str> = rendered.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
            let reason = reason.join(" ");
            eprintln!("tidings: {} (see --help)", reason.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("tidings: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Serve(args) => serve(args).await,
        Command::Keys(keys) => manage_keys(keys).await,
        Command::Attempts(args) => attempts(args).await,
        Command::Replay(args) => replay(args).await,
        Command::Verify(args) => verify(args),
        Command::Groups(command) => groups(command).await,
        Command::Secrets(command) => secrets(command).await,
        Command::DeliveryOptions(args) => delivery_options(args).await,
        Command::PortalLink(args) => portal_link(args).await,
    }
}
