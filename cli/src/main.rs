//! `tidings`: runs the whole stack locally on the embedded adapters and manages API keys.
//! Wiring only; the behaviour lives in the `tidings` crate.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use tidings::aws::DynamoStore;
use tidings::config::{Backend, Settings};
use tidings::delivery::RetrySchedule;
use tidings::domain::api_key::NewApiKey;
use tidings::domain::{utc_timestamp, OrganizationId, Scope};
use tidings::embedded::SqliteBackend;
use tidings::ports::{Store, SystemClock};
use tidings::App;
use time::OffsetDateTime;
use uuid::Uuid;

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
    /// Rotate a subscription's signing key.
    #[command(subcommand)]
    Secrets(SecretsCommand),
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// A new signing key for a subscription of any dialect; the old one keeps signing for the
    /// overlap. Prints the new key alone on the last line.
    Rotate {
        #[command(flatten)]
        data: StoreArgs,
        /// The subscription's organization.
        #[arg(long, value_parser = parse_org)]
        org: OrganizationId,
        /// The subscription (a Zettle uuid, a Metro id, a Lagerkoll guid).
        #[arg(long, value_parser = parse_uuid)]
        subscription: Uuid,
        /// How long the old key keeps signing (0s revokes it now; at most 7 days).
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        overlap: std::time::Duration,
    },
}

#[derive(Subcommand)]
enum GroupsCommand {
    /// Create a group or replace its members.
    Set {
        #[command(flatten)]
        data: StoreArgs,
        /// The group's name.
        name: String,
        /// A member store (organization UUID); repeat for each.
        #[arg(long = "org", value_parser = parse_org, required = true)]
        orgs: Vec<OrganizationId>,
    },
    /// List the groups and their members.
    List {
        #[command(flatten)]
        data: StoreArgs,
    },
}

/// Where a stack's data lives: the local data directory, or a deployed stack's resources.
#[derive(Args)]
struct StackArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The deployed stack's delivery queue (the DeliveryQueueUrl output).
    #[arg(long, env = "TIDINGS_QUEUE_URL", requires = "table")]
    queue_url: Option<String>,
    /// The deployed stack's dead-letter queue (the DeadLetterQueueUrl output).
    #[arg(long, env = "TIDINGS_DEAD_LETTER_QUEUE_URL", requires = "table")]
    dead_letter_queue_url: Option<String>,
}

#[derive(Args)]
struct AttemptsArgs {
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
struct ReplayArgs {
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

#[derive(Args)]
struct VerifyArgs {
    /// The subscription's signingKey, or its whsec_ form.
    #[arg(long, env = "TIDINGS_WEBHOOK_SECRET")]
    secret: String,
    /// File holding the exact body received, byte for byte (an editor's added newline breaks
    /// every signature); `-` reads it from stdin.
    #[arg(long)]
    body: PathBuf,
    /// A received header, "Name: value"; repeat for each.
    #[arg(long = "header")]
    headers: Vec<String>,
    /// File of received headers, one "Name: value" a line (as `curl -D` writes them).
    #[arg(long = "headers")]
    headers_file: Option<PathBuf>,
    /// How far webhook-timestamp may be from now, in seconds.
    #[arg(long, default_value_t = 300)]
    tolerance: i64,
}

#[derive(Args)]
struct DataDir {
    /// Directory holding the SQLite file and the mail outbox.
    #[arg(long, env = "TIDINGS_DATA_DIR", default_value = ".tidings")]
    data_dir: PathBuf,
}

/// Where keys live: the local data directory, or a deployed stack's DynamoDB table.
#[derive(Args)]
struct StoreArgs {
    #[command(flatten)]
    local: DataDir,
    /// Manage the keys of a deployed stack: its DynamoDB table (the stack's TableName output).
    /// Uses the standard AWS configuration (profile, region, AWS_ENDPOINT_URL).
    #[arg(long, env = "TIDINGS_TABLE", conflicts_with = "data_dir")]
    table: Option<String>,
}

#[derive(Args)]
struct ServeArgs {
    /// Log lines as text, or as JSON objects with the same fields as on Lambda (for files and
    /// collectors).
    #[arg(long, env = "TIDINGS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Address to listen on; port 0 picks a free port (the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    data: DataDir,
    /// Waits before each delivery attempt, comma-separated [default: 0s,5s,5m,30m,2h,5h,10h,10h].
    #[arg(long, env = "TIDINGS_RETRY_SCHEDULE", value_parser = parse_schedule)]
    retry_schedule: Option<RetrySchedule>,
    /// Publishes one organization may make per minute, counted in the store [default: 0, no limit].
    #[arg(long, env = "TIDINGS_PUBLISH_LIMIT_PER_MINUTE")]
    publishes_per_minute: Option<u32>,
    /// Connect + total timeout of each delivery (and of the destination check) [default: 10s].
    #[arg(long, env = "TIDINGS_DELIVERY_TIMEOUT", value_parser = humantime::parse_duration)]
    delivery_timeout: Option<std::time::Duration>,
    /// Time a client has to send a request's headers; also how long an idle keep-alive
    /// connection stays open [default: 10s].
    #[arg(long, env = "TIDINGS_HEADER_TIMEOUT", value_parser = humantime::parse_duration)]
    header_timeout: Option<std::time::Duration>,
    /// Time a client has to send a request's body [default: 30s].
    #[arg(long, env = "TIDINGS_BODY_TIMEOUT", value_parser = humantime::parse_duration)]
    body_timeout: Option<std::time::Duration>,
    /// Client connections open at once; more wait until one closes [default: 1024].
    #[arg(long, env = "TIDINGS_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: Option<u32>,
}

impl ServeArgs {
    /// The settings these flags describe: the defaults, overridden by what was given.
    fn settings(&self) -> (Settings, tidings::server::Limits) {
        let mut settings = Settings::new(Backend::Embedded { data_dir: self.data.data_dir.clone() });
        if let Some(schedule) = &self.retry_schedule {
            settings.retry_schedule = schedule.clone();
        }
        settings.publishes_per_minute = self.publishes_per_minute.unwrap_or(settings.publishes_per_minute);
        settings.delivery_timeout = self.delivery_timeout.unwrap_or(settings.delivery_timeout);
        let defaults = tidings::server::Limits::default();
        let limits = tidings::server::Limits {
            header_timeout: self.header_timeout.unwrap_or(defaults.header_timeout),
            body_timeout: self.body_timeout.unwrap_or(defaults.body_timeout),
            max_connections: self.max_connections.map_or(defaults.max_connections, |n| n as usize),
        };
        (settings, limits)
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum KeysCommand {
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

fn parse_schedule(s: &str) -> Result<RetrySchedule, String> {
    s.parse()
}

fn parse_org(s: &str) -> Result<OrganizationId, String> {
    s.parse()
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    s.parse()
}

fn parse_uuid(s: &str) -> Result<Uuid, String> {
    Uuid::parse_str(s).map_err(|_| format!("{s:?} is not a UUID"))
}

fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{s:?} is not an RFC 3339 time ({e})"))
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
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    use std::io::IsTerminal;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, never into files.
        .with_ansi(std::io::stderr().is_terminal())
        // A log line that cannot be written (stderr on a full disk) is dropped, never fatal.
        .log_internal_errors(false);
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    // One serve per data directory: its queue has one consumer, so what that consumer left in
    // flight when it last stopped (a crash, kill -9) is safe to deliver again at once.
    let _lock = tidings::embedded::sqlite::DataDirLock::acquire(&args.data.data_dir).map_err(|e| e.to_string())?;
    let (settings, limits) = args.settings();
    let app = App::from_settings(&settings).await.map_err(|e| e.to_string())?;
    let recovered = app.queue.recover_in_flight().await.map_err(|e| e.to_string())?;
    if recovered > 0 {
        tracing::warn!(jobs = recovered, "deliveries in flight when Tidings last stopped are queued again");
    }
    let listener = tidings::server::bind(args.listen).await.map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    say(format_args!("Tidings listening on http://{addr} (data in {})", args.data.data_dir.display()));
    // One signal stops both the server and the delivery worker; each finishes what is in flight.
    let (stop, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut server_stop = stop.subscribe();
    let mut worker_stop = stop.subscribe();
    let worker = tokio::spawn(tidings::worker::run(app.clone(), async move {
        let _ = worker_stop.recv().await;
    }));
    let server = tidings::server::serve(listener, app, limits, async move {
        let _ = server_stop.recv().await;
    });
    tokio::pin!(server);
    // Requests in flight (a destination check takes up to the delivery timeout) get as long as
    // deliveries in flight do; the stop never takes longer.
    let grace = settings.delivery_timeout + tidings::worker::SHUTDOWN_GRACE;
    tokio::select! {
        result = &mut server => result.map_err(|e| e.to_string())?,
        _ = shutdown_signal() => {
            let _ = stop.send(());
            match tokio::time::timeout(grace, &mut server).await {
                Ok(result) => result.map_err(|e| e.to_string())?,
                Err(_) => tracing::warn!("requests still open at shutdown were cut off"),
            }
        }
    }
    let _ = stop.send(());
    worker.await.map_err(|e| e.to_string())?;
    say(format_args!("Tidings stopped"));
    Ok(())
}

/// A line on stdout for a long-running server: unlike `println!`, a failed write (a closed
/// pipe, a full disk) is ignored rather than fatal.
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

async fn open_store(args: &StoreArgs) -> Result<Box<dyn Store>, String> {
    match &args.table {
        Some(table) => {
            let sdk = tidings::aws::load_config_checked().await.map_err(|e| e.to_string())?;
            Ok(Box::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table)))
        }
        None => Ok(Box::new(
            SqliteBackend::open_in(existing(&args.local.data_dir)?, Arc::new(SystemClock))
                .map_err(|e| e.to_string())?,
        )),
    }
}

/// A data directory `tidings serve` made: only `serve` creates one, so a mistyped path is an
/// error rather than a new, empty store.
fn existing(data_dir: &std::path::Path) -> Result<&std::path::Path, String> {
    if data_dir.is_dir() {
        Ok(data_dir)
    } else {
        Err(format!(
            "no data directory at {}: `tidings serve` creates it; pass the --data-dir (or TIDINGS_DATA_DIR) it uses",
            data_dir.display()
        ))
    }
}

/// The embedded stack in a data directory, or a deployed stack's table and queues.
async fn open_stack(args: &StackArgs) -> Result<App, String> {
    match &args.store.table {
        Some(table) => {
            let settings = tidings::config::AwsSettings {
                table: table.clone(),
                queue_url: args.queue_url.clone().ok_or("--queue-url (or TIDINGS_QUEUE_URL) is needed with --table")?,
                retry_queue_url: None,
                dead_letter_queue_url: args
                    .dead_letter_queue_url
                    .clone()
                    .ok_or("--dead-letter-queue-url (or TIDINGS_DEAD_LETTER_QUEUE_URL) is needed with --table")?,
                // The CLI sends no mail.
                sender: String::new(),
            };
            let sdk = tidings::aws::load_config_checked().await.map_err(|e| e.to_string())?;
            App::aws(&sdk, &settings, tidings::destination::DestinationPolicy::STRICT).map_err(|e| e.to_string())
        }
        None => {
            let backend = Backend::Embedded { data_dir: existing(&args.store.local.data_dir)?.to_owned() };
            App::from_settings(&Settings::new(backend)).await.map_err(|e| e.to_string())
        }
    }
}

async fn attempts(args: AttemptsArgs) -> Result<(), String> {
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

async fn replay(args: ReplayArgs) -> Result<(), String> {
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

async fn secrets(command: SecretsCommand) -> Result<(), String> {
    let SecretsCommand::Rotate { data, org, subscription, overlap } = command;
    let store = open_store(&data).await?;
    let current = store
        .get_subscription(org, subscription)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no subscription {subscription} in organization {org}"))?;
    let overlap = time::Duration::try_from(overlap).map_err(|e| e.to_string())?;
    let now = OffsetDateTime::now_utc();
    let rotated =
        tidings::subscriptions::rotate_signing_key(&*store, now, current, overlap).await.map_err(|e| e.to_string())?;
    println!("Subscription {subscription}: the previous key signs until {}", utc_timestamp(now + overlap));
    println!("{}", rotated.signing_key);
    Ok(())
}

async fn groups(command: GroupsCommand) -> Result<(), String> {
    match command {
        GroupsCommand::Set { data, name, mut orgs } => {
            if name.trim().is_empty() {
                return Err("the group name must not be empty".into());
            }
            orgs.sort();
            orgs.dedup();
            open_store(&data).await?.put_store_group(&name, &orgs).await.map_err(|e| e.to_string())?;
            println!("Group {name}: {} stores", orgs.len());
            Ok(())
        }
        GroupsCommand::List { data } => {
            for group in open_store(&data).await?.list_store_groups().await.map_err(|e| e.to_string())? {
                let members: Vec<String> = group.members.iter().map(|m| m.to_string()).collect();
                println!("{}  {}", group.name, members.join(" "));
            }
            Ok(())
        }
    }
}

fn verify(args: VerifyArgs) -> Result<(), String> {
    let body = if args.body.as_os_str() == "-" {
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut body).map_err(|e| format!("cannot read stdin: {e}"))?;
        body
    } else {
        std::fs::read(&args.body).map_err(|e| format!("cannot read {}: {e}", args.body.display()))?
    };
    let mut lines = args.headers.clone();
    if let Some(file) = &args.headers_file {
        let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        lines.extend(text.lines().map(str::to_owned));
    }
    let headers: Vec<(String, String)> = lines
        .iter()
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, _)| !name.contains(' '))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let verification = tidings::signing::verify_webhook(&args.secret, &headers, &body, now, args.tolerance)?;
    for finding in &verification.findings {
        println!("{finding}");
    }
    if verification.valid {
        Ok(())
    } else {
        Err("the webhook did not verify".into())
    }
}

async fn manage_keys(command: KeysCommand) -> Result<(), String> {
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
