//! Where a command's data lives: the local data directory or a deployed stack's resources.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use tidings::aws::DynamoStore;
use tidings::config::{Backend, Settings};
use tidings::embedded::SqliteBackend;
use tidings::ports::{Queue, Store, SystemClock};
use tidings::App;

/// Where a stack's data lives: the local data directory, or a deployed stack's resources.
#[derive(Args)]
pub(crate) struct StackArgs {
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
pub(crate) struct DataDir {
    /// Directory holding the SQLite file and the mail outbox.
    #[arg(long, env = "TIDINGS_DATA_DIR", default_value = ".tidings")]
    pub(crate) data_dir: PathBuf,
}

/// Where keys live: the local data directory, or a deployed stack's DynamoDB table.
#[derive(Args)]
pub(crate) struct StoreArgs {
    #[command(flatten)]
    local: DataDir,
    /// Manage the keys of a deployed stack: its DynamoDB table (the stack's TableName output).
    /// Uses the standard AWS configuration (profile, region, AWS_ENDPOINT_URL).
    #[arg(long, env = "TIDINGS_TABLE", conflicts_with = "data_dir")]
    table: Option<String>,
}

/// One subscription, wherever it is stored.
#[derive(Args)]
pub(crate) struct SubscriptionArgs {
    #[command(flatten)]
    data: StoreArgs,
    /// The subscription's organization.
    #[arg(long, value_parser = crate::parse::parse_org)]
    org: tidings::domain::OrganizationId,
    /// The subscription (a Zettle uuid, a Metro id, a Lagerkoll guid).
    #[arg(long, value_parser = crate::parse::parse_uuid)]
    subscription: uuid::Uuid,
}

impl SubscriptionArgs {
    /// Its store and the subscription as stored; an error naming it when there is none.
    pub(crate) async fn open(&self) -> Result<(Box<dyn Store>, tidings::domain::Subscription), String> {
        let store = open_store(&self.data).await?;
        let current = self.read(&*store).await?;
        Ok((store, current))
    }

    /// Like [`Self::open`], with the data directory's queue where there is one (a deployed
    /// stack's queues are not the CLI's to name here).
    pub(crate) async fn open_with_queue(
        &self,
    ) -> Result<(Arc<dyn Store>, Option<Arc<dyn Queue>>, tidings::domain::Subscription), String> {
        let (store, queue): (Arc<dyn Store>, Option<Arc<dyn Queue>>) = match &self.data.table {
            Some(_) => (open_store(&self.data).await?.into(), None),
            None => {
                let backend = Arc::new(
                    SqliteBackend::open_in(existing(&self.data.local.data_dir)?, Arc::new(SystemClock))
                        .map_err(|e| e.to_string())?,
                );
                (backend.clone(), Some(backend))
            }
        };
        let current = self.read(&*store).await?;
        Ok((store, queue, current))
    }

    async fn read(&self, store: &dyn Store) -> Result<tidings::domain::Subscription, String> {
        let (org, id) = (self.org, self.subscription);
        store
            .get_subscription(org, id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no subscription {id} in organization {org}"))
    }
}

pub(crate) async fn open_store(args: &StoreArgs) -> Result<Box<dyn Store>, String> {
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
pub(crate) fn existing(data_dir: &std::path::Path) -> Result<&std::path::Path, String> {
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
pub(crate) async fn open_stack(args: &StackArgs) -> Result<App, String> {
    match &args.store.table {
        Some(table) => {
            let settings = tidings::config::AwsSettings {
                table: table.clone(),
                queue_url: args.queue_url.clone().ok_or("--queue-url (or TIDINGS_QUEUE_URL) is needed with --table")?,
                retry_queue_url: None,
                paced_queue_url: None,
                dead_letter_queue_url: args
                    .dead_letter_queue_url
                    .clone()
                    .ok_or("--dead-letter-queue-url (or TIDINGS_DEAD_LETTER_QUEUE_URL) is needed with --table")?,
                // The CLI sends no mail.
                sender: String::new(),
                max_delay: None,
                line_lease: None,
                // The CLI reads no publish queue.
                publish_grants: Default::default(),
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
