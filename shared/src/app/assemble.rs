//! The stacks an [`App`] is assembled from: the embedded adapters of `tidings serve` (one SQLite
//! file and an outbox), or DynamoDB, SQS and SES v2 on AWS, from the settings read once.

use std::path::Path;
use std::sync::Arc;

use super::App;
use crate::config::DeliverySettings;
use crate::destination::{self, DestinationPolicy};
use crate::embedded::{OutboxMailer, SqliteBackend};
use crate::ports::{Clock, SystemClock};
use crate::Result;

impl App {
    /// The embedded stack of `tidings serve`: one SQLite file and an outbox in `data_dir`.
    pub fn embedded(data_dir: &Path, destinations: DestinationPolicy, clock: Arc<dyn Clock>) -> Result<App> {
        let http = destination::HttpClient::new(destinations, destination::DEFAULT_TIMEOUT)?;
        App::embedded_with(data_dir, destinations, clock, http)
    }

    /// The embedded stack, delivering through `http`.
    fn embedded_with(
        data_dir: &Path,
        destinations: DestinationPolicy,
        clock: Arc<dyn Clock>,
        http: destination::HttpClient,
    ) -> Result<App> {
        let backend = Arc::new(SqliteBackend::open_in(data_dir, clock.clone())?);
        Ok(App {
            store: backend.clone(),
            queue: backend.clone(),
            publish_log: backend,
            mailer: Arc::new(OutboxMailer::new(data_dir.join("outbox"), "Tidings", "alerts@tidings.local")),
            clock,
            destinations,
            http,
            delivery: DeliverySettings::default(),
            delivery_probes: Default::default(),
            slot_book: Default::default(),
            filters: Default::default(),
            transformations: Default::default(),
            publishes_per_minute: 0,
            keys: Default::default(),
            portal_secret: Default::default(),
        })
    }

    /// The AWS stack: DynamoDB, SQS and SES v2 clients built from one SDK configuration.
    #[cfg(feature = "aws")]
    pub fn aws(
        sdk: &aws_config::SdkConfig,
        settings: &crate::config::AwsSettings,
        destinations: DestinationPolicy,
    ) -> Result<App> {
        App::aws_counted(sdk, settings, destinations, None)
    }

    /// The AWS stack, with every API call counted by `counter` (benchmarks).
    #[cfg(feature = "aws")]
    pub fn aws_counted(
        sdk: &aws_config::SdkConfig,
        settings: &crate::config::AwsSettings,
        destinations: DestinationPolicy,
        counter: Option<crate::aws::CallCounter>,
    ) -> Result<App> {
        let http = destination::HttpClient::new(destinations, destination::DEFAULT_TIMEOUT)?;
        App::aws_with(sdk, settings, destinations, counter, http)
    }

    /// The AWS stack, delivering through `http`.
    #[cfg(feature = "aws")]
    fn aws_with(
        sdk: &aws_config::SdkConfig,
        settings: &crate::config::AwsSettings,
        destinations: DestinationPolicy,
        counter: Option<crate::aws::CallCounter>,
        http: destination::HttpClient,
    ) -> Result<App> {
        use crate::aws::{DynamoStore, QueueThenClaim, SesMailer, SqsQueue};
        let dynamodb = {
            let mut config = aws_sdk_dynamodb::config::Builder::from(sdk);
            if let Some(counter) = &counter {
                config = config.interceptor(counter.clone());
            }
            aws_sdk_dynamodb::Client::from_conf(config.build())
        };
        let sqs = {
            let mut config = aws_sdk_sqs::config::Builder::from(sdk);
            if let Some(counter) = &counter {
                config = config.interceptor(counter.clone());
            }
            aws_sdk_sqs::Client::from_conf(config.build())
        };
        let ses = {
            let mut config = aws_sdk_sesv2::config::Builder::from(sdk);
            if let Some(counter) = &counter {
                config = config.interceptor(counter.clone());
            }
            aws_sdk_sesv2::Client::from_conf(config.build())
        };
        let store = Arc::new(DynamoStore::new(dynamodb, &settings.table));
        let mut queue =
            SqsQueue::new(sqs, &settings.queue_url, &settings.dead_letter_queue_url).with_lines(store.clone());
        if let Some(max_delay) = settings.max_delay {
            queue = queue.with_max_delay(max_delay);
        }
        if let Some(lease) = settings.line_lease {
            queue = queue.with_line_lease(lease);
        }
        if let Some(retries) = &settings.retry_queue_url {
            queue = queue.with_retry_queue(retries);
        }
        if let Some(paced) = &settings.paced_queue_url {
            queue = queue.with_paced_queue(paced);
        }
        let queue = Arc::new(queue);
        let first_lane_timeout =
            settings.retry_queue_url.is_some().then(|| crate::config::first_lane_timeout(http.timeout()));
        Ok(App {
            store: store.clone(),
            queue: queue.clone(),
            publish_log: Arc::new(QueueThenClaim { store, queue }),
            mailer: Arc::new(SesMailer::new(ses, &settings.sender)),
            clock: Arc::new(SystemClock),
            destinations,
            http,
            delivery: DeliverySettings { first_lane_timeout, ..DeliverySettings::default() },
            delivery_probes: Default::default(),
            slot_book: Default::default(),
            filters: Default::default(),
            transformations: Default::default(),
            publishes_per_minute: 0,
            keys: Default::default(),
            portal_secret: Default::default(),
        })
    }

    /// The application `settings` describe. The HTTP client is built here, once, with the
    /// configured delivery timeout.
    pub async fn from_settings(settings: &crate::config::Settings) -> Result<App> {
        use crate::config::Backend;
        let (destinations, clock) = (settings.destinations, Arc::new(SystemClock));
        let http = destination::HttpClient::new(destinations, settings.delivery_timeout)?;
        let mut app = match &settings.backend {
            #[cfg(feature = "aws")]
            Backend::Aws(aws) => App::aws_with(&crate::aws::load_config().await, aws, destinations, None, http)?,
            #[cfg(not(feature = "aws"))]
            Backend::Aws(_) => return Err(crate::Error::internal("this build has no AWS adapters (feature aws)")),
            Backend::Embedded { data_dir } => App::embedded_with(data_dir, destinations, clock, http)?,
        };
        app.delivery.schedule = settings.retry_schedule.clone();
        app.publishes_per_minute = settings.publishes_per_minute;
        app.keys = Arc::new(super::KeyCache::new(settings.key_cache_ttl));
        Ok(app)
    }

    /// The embedded stack with the system clock.
    pub fn embedded_default(data_dir: &Path, destinations: DestinationPolicy) -> Result<App> {
        App::embedded(data_dir, destinations, Arc::new(SystemClock))
    }
}
