//! Configuration: one typed [`Settings`] value with its defaults, read from environment
//! variables with a message naming the variable on a bad or missing value.

use crate::destination::DestinationPolicy;
use crate::{Error, Result};

/// A variable that must be set.
pub fn required(name: &str) -> Result<String> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Ok(value),
        Ok(_) => Err(Error::internal(format!("environment variable {name} is empty"))),
        Err(_) => Err(Error::internal(format!("environment variable {name} is not set"))),
    }
}

/// A variable with a default.
pub(crate) fn optional(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `TIDINGS_DESTINATIONS`: `strict` (default: public HTTPS only) or `local` (http and
/// loopback allowed, for local testing).
fn destination_policy() -> Result<DestinationPolicy> {
    match optional("TIDINGS_DESTINATIONS").as_deref() {
        None | Some("strict") => Ok(DestinationPolicy::STRICT),
        Some("local") => Ok(DestinationPolicy::LOCAL),
        Some(other) => {
            Err(Error::internal(format!("TIDINGS_DESTINATIONS must be \"strict\" or \"local\", not {other:?}")))
        }
    }
}

/// `TIDINGS_RETRY_SCHEDULE`: waits before each attempt, e.g. `0s,5s,5m,30m,2h,5h,10h,10h` (the
/// default).
fn retry_schedule() -> Result<Option<crate::domain::RetrySchedule>> {
    optional("TIDINGS_RETRY_SCHEDULE")
        .map(|raw| raw.parse().map_err(|e| Error::internal(format!("TIDINGS_RETRY_SCHEDULE: {e}"))))
        .transpose()
}

/// `TIDINGS_PUBLISH_LIMIT_PER_MINUTE`: publishes one organization may make per minute (0: no
/// limit; the template sets 12000).
fn parse_publish_limit(raw: Option<&str>) -> Result<Option<u32>> {
    raw.map(|raw| {
        raw.trim().parse().map_err(|_| {
            Error::internal(format!("TIDINGS_PUBLISH_LIMIT_PER_MINUTE must be a whole number, not {raw:?}"))
        })
    })
    .transpose()
}

/// A timeout such as `10s` or `2500ms`, more than zero: what every timeout setting accepts, from
/// the environment here and from the CLI's flags.
pub fn positive_duration(raw: &str) -> std::result::Result<std::time::Duration, String> {
    match humantime::parse_duration(raw.trim()) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        Ok(_) => Err(format!("must be more than zero, not {raw:?}")),
        Err(_) => Err(format!("must be a duration such as 10s or 2500ms, not {raw:?}")),
    }
}

/// `TIDINGS_DELIVERY_TIMEOUT`: connect + total timeout of each delivery, e.g. `10s` (the
/// default) or `2500ms`.
fn parse_timeout(raw: Option<&str>) -> Result<Option<std::time::Duration>> {
    raw.map(|raw| positive_duration(raw).map_err(|e| Error::internal(format!("TIDINGS_DELIVERY_TIMEOUT {e}"))))
        .transpose()
}

/// How long a Lambda instance uses an API key it read before reading it again.
pub const DEFAULT_AWS_KEY_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// How deliveries behave: the retry schedule, when a failing subscription is disabled, how
/// often its contact is mailed. The defaults are the documented ones.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub schedule: crate::domain::RetrySchedule,
    /// A subscription whose deliveries have all failed for this long is disabled.
    pub disable_after: time::Duration,
    /// At most one alert email per subscription per window.
    pub alert_window: time::Duration,
    /// The longest wait a receiver's `Retry-After` can ask for.
    pub max_retry_after: std::time::Duration,
    /// How often the local worker purges attempts and messages past their retention (on AWS the
    /// table's TTL does it).
    pub purge_every: std::time::Duration,
    /// How long a job in the first lane waits for its endpoint's answer (where the host has a
    /// slow lane: SQS with a retry queue). An endpoint that starts failing holds a first-lane
    /// batch this long, not the whole delivery timeout: the request is given up, the attempt
    /// counted, and the job sent again at once in the slow lane with the whole timeout, where
    /// the subscription's jobs go while it is slow (`Subscription::slow_since`).
    pub first_lane_timeout: Option<std::time::Duration>,
}

/// The first lane's time for an answer: a quarter of the delivery timeout (2.5 s at the
/// default 10 s).
pub fn first_lane_timeout(delivery_timeout: std::time::Duration) -> std::time::Duration {
    delivery_timeout / 4
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            schedule: crate::domain::RetrySchedule::default(),
            disable_after: time::Duration::days(5),
            alert_window: time::Duration::hours(24),
            max_retry_after: std::time::Duration::from_secs(60 * 60),
            purge_every: std::time::Duration::from_secs(60),
            first_lane_timeout: None,
        }
    }
}

/// Everything a running Tidings is configured by, built once: from the environment on Lambda
/// ([`Settings::from_env`]), from flags (and the same variables) in `tidings serve`. The defaults
/// live here and nowhere else.
#[derive(Debug, Clone)]
pub struct Settings {
    pub backend: Backend,
    /// Which destination URLs are allowed.
    pub destinations: DestinationPolicy,
    /// Waits before each delivery attempt.
    pub retry_schedule: crate::domain::RetrySchedule,
    /// Connect + total timeout of each delivery and destination check.
    pub delivery_timeout: std::time::Duration,
    /// Publishes one organization may make per calendar minute; 0 = no limit.
    pub publishes_per_minute: u32,
    /// How long an API key read from the store is used without reading it again (so how long
    /// a revocation may take to reach a warm instance); zero reads it every time.
    pub key_cache_ttl: std::time::Duration,
}

/// Where the data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// DynamoDB, SQS and SES v2.
    Aws(AwsSettings),
    /// One SQLite file and an `.eml` outbox in a directory.
    Embedded { data_dir: std::path::PathBuf },
}

impl Settings {
    /// The defaults, on `backend`: strict destinations on AWS, local ones (http and loopback
    /// allowed) on the embedded backend.
    pub fn new(backend: Backend) -> Settings {
        // On AWS a key read is a DynamoDB call per request; locally a revocation works at once.
        let (destinations, key_cache_ttl) = match backend {
            Backend::Aws(_) => (DestinationPolicy::STRICT, DEFAULT_AWS_KEY_CACHE_TTL),
            Backend::Embedded { .. } => (DestinationPolicy::LOCAL, std::time::Duration::ZERO),
        };
        Settings {
            backend,
            destinations,
            retry_schedule: Default::default(),
            delivery_timeout: crate::destination::DEFAULT_TIMEOUT,
            publishes_per_minute: 0,
            key_cache_ttl,
        }
    }

    /// A Lambda binary's settings.
    ///
    /// `TIDINGS_BACKEND` selects the adapters: `aws` (the default) reads `TIDINGS_TABLE`,
    /// `TIDINGS_QUEUE_URL`, `TIDINGS_DEAD_LETTER_QUEUE_URL` and `TIDINGS_SENDER`; `embedded`
    /// keeps everything in the SQLite file under `TIDINGS_DATA_DIR` (for `cargo lambda watch`).
    /// Then `TIDINGS_DESTINATIONS` (default `strict`), `TIDINGS_RETRY_SCHEDULE`,
    /// `TIDINGS_DELIVERY_TIMEOUT`, `TIDINGS_PUBLISH_LIMIT_PER_MINUTE` and `TIDINGS_KEY_CACHE_TTL`.
    pub fn from_env() -> Result<Settings> {
        let backend = match optional("TIDINGS_BACKEND").as_deref().unwrap_or("aws") {
            "aws" => Backend::Aws(AwsSettings::from_env()?),
            "embedded" => Backend::Embedded { data_dir: required("TIDINGS_DATA_DIR")?.into() },
            other => {
                return Err(Error::internal(format!("TIDINGS_BACKEND must be \"aws\" or \"embedded\", not {other:?}")))
            }
        };
        let defaults = Settings::new(backend);
        Ok(Settings {
            destinations: destination_policy()?,
            retry_schedule: retry_schedule()?.unwrap_or(defaults.retry_schedule.clone()),
            delivery_timeout: parse_timeout(optional("TIDINGS_DELIVERY_TIMEOUT").as_deref())?
                .unwrap_or(defaults.delivery_timeout),
            publishes_per_minute: parse_publish_limit(optional("TIDINGS_PUBLISH_LIMIT_PER_MINUTE").as_deref())?
                .unwrap_or(defaults.publishes_per_minute),
            key_cache_ttl: parse_key_cache_ttl(optional("TIDINGS_KEY_CACHE_TTL").as_deref())?
                .unwrap_or(defaults.key_cache_ttl),
            ..defaults
        })
    }
}

impl Settings {
    /// Which organizations each publish queue may publish for (none off AWS: `tidings serve`
    /// has no publish queues).
    pub fn publish_grants(&self) -> crate::domain::PublishGrants {
        match &self.backend {
            Backend::Aws(aws) => aws.publish_grants.clone(),
            Backend::Embedded { .. } => crate::domain::PublishGrants::default(),
        }
    }

    /// The queues of the slow and paced lanes on AWS, as far as the stack has them.
    #[cfg(feature = "aws")]
    pub fn lane_queues(&self) -> crate::aws::LaneQueues {
        match &self.backend {
            Backend::Aws(aws) => crate::aws::LaneQueues {
                retry_url: aws.retry_queue_url.clone(),
                paced_url: aws.paced_queue_url.clone(),
            },
            Backend::Embedded { .. } => crate::aws::LaneQueues::default(),
        }
    }
}

/// `TIDINGS_KEY_CACHE_TTL`: how long a warm instance uses an API key it read, e.g. `60s` (the
/// default on AWS) or `0s` (read on every request).
fn parse_key_cache_ttl(raw: Option<&str>) -> Result<Option<std::time::Duration>> {
    raw.map(|raw| {
        humantime::parse_duration(raw.trim())
            .map_err(|_| Error::internal(format!("TIDINGS_KEY_CACHE_TTL must be a duration such as 60s, not {raw:?}")))
    })
    .transpose()
}

/// Where the AWS resources are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    pub table: String,
    pub queue_url: String,
    /// Where retries go (the slow lane); the delivery queue itself when unset.
    pub retry_queue_url: Option<String>,
    /// Where jobs wait for their rate-limit slot (the paced lane); the retry queue when unset.
    pub paced_queue_url: Option<String>,
    pub dead_letter_queue_url: String,
    /// The SES-verified sender of alert mail.
    pub sender: String,
    /// The longest wait put on an SQS message as its delay, when shorter than SQS's own 15
    /// minutes (a test's). A longer wait is sent on again each time it runs out, never held in
    /// flight.
    pub max_delay: Option<std::time::Duration>,
    /// How long an ordered line's head keeps its seat without its job being received, when not
    /// the adapter's 45 minutes (a test's): past it the line sweeper sends the job again.
    pub line_lease: Option<std::time::Duration>,
    /// Which organizations each publish queue may publish for (`TIDINGS_PUBLISH_GRANTS`): unset,
    /// none may publish for any.
    pub publish_grants: crate::domain::PublishGrants,
}

impl AwsSettings {
    pub fn from_env() -> Result<AwsSettings> {
        Ok(AwsSettings {
            table: required("TIDINGS_TABLE")?,
            queue_url: required("TIDINGS_QUEUE_URL")?,
            retry_queue_url: optional("TIDINGS_RETRY_QUEUE_URL"),
            paced_queue_url: optional("TIDINGS_PACED_QUEUE_URL"),
            dead_letter_queue_url: required("TIDINGS_DEAD_LETTER_QUEUE_URL")?,
            sender: required("TIDINGS_SENDER")?,
            max_delay: parse_max_delay(optional("TIDINGS_SQS_MAX_DELAY").as_deref())?,
            line_lease: optional("TIDINGS_LINE_LEASE")
                .map(|raw| positive_duration(&raw).map_err(|e| Error::internal(format!("TIDINGS_LINE_LEASE {e}"))))
                .transpose()?,
            publish_grants: crate::domain::PublishGrants::parse(
                &optional("TIDINGS_PUBLISH_GRANTS").unwrap_or_default(),
            )
            .map_err(|e| Error::internal(format!("TIDINGS_PUBLISH_GRANTS: {e}")))?,
        })
    }
}

/// `TIDINGS_SQS_MAX_DELAY`: the longest delay put on an SQS message, SQS's own 15 minutes unless
/// a test scales it down (so a long wait comes back and is sent on within seconds).
fn parse_max_delay(raw: Option<&str>) -> Result<Option<std::time::Duration>> {
    let Some(raw) = raw else { return Ok(None) };
    match positive_duration(raw) {
        Ok(delay) if delay.as_secs() <= 15 * 60 && delay.subsec_nanos() == 0 => Ok(Some(delay)),
        Ok(_) => Err(Error::internal(format!("TIDINGS_SQS_MAX_DELAY must be whole seconds up to 15m, not {raw:?}"))),
        Err(e) => Err(Error::internal(format!("TIDINGS_SQS_MAX_DELAY {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_durations_above_zero() {
        assert_eq!(positive_duration(" 2500ms ").unwrap(), std::time::Duration::from_millis(2500));
        assert!(positive_duration("0s").unwrap_err().contains("more than zero"));
        assert!(positive_duration("soon").unwrap_err().contains("such as 10s"));
    }

    #[test]
    fn the_publish_limit_is_a_whole_number_and_a_bad_one_names_the_variable() {
        assert_eq!(parse_publish_limit(None).unwrap(), None);
        assert_eq!(parse_publish_limit(Some("12000")).unwrap(), Some(12_000));
        let err = parse_publish_limit(Some("lots")).unwrap_err().to_string();
        assert!(err.contains("TIDINGS_PUBLISH_LIMIT_PER_MINUTE"), "{err}");
    }

    #[test]
    fn the_key_cache_ttl_may_be_zero_and_a_bad_one_names_the_variable() {
        assert_eq!(parse_key_cache_ttl(Some("0s")).unwrap(), Some(std::time::Duration::ZERO));
        assert_eq!(parse_key_cache_ttl(None).unwrap(), None);
        let err = parse_key_cache_ttl(Some("a while")).unwrap_err().to_string();
        assert!(err.contains("TIDINGS_KEY_CACHE_TTL"), "{err}");
    }

    #[test]
    fn the_sqs_delay_is_at_most_fifteen_minutes_in_whole_seconds() {
        assert_eq!(parse_max_delay(None).unwrap(), None);
        assert_eq!(parse_max_delay(Some("15m")).unwrap(), Some(std::time::Duration::from_secs(900)));
        assert_eq!(parse_max_delay(Some("2s")).unwrap(), Some(std::time::Duration::from_secs(2)));
        for bad in ["16m", "1500ms", "never"] {
            let err = parse_max_delay(Some(bad)).unwrap_err().to_string();
            assert!(err.contains("TIDINGS_SQS_MAX_DELAY"), "{err}");
        }
    }

    #[test]
    fn timeouts_parse_with_units_and_bad_ones_name_the_variable() {
        assert_eq!(parse_timeout(None).unwrap(), None);
        assert_eq!(parse_timeout(Some("2500ms")).unwrap(), Some(std::time::Duration::from_millis(2500)));
        let err = parse_timeout(Some("soon")).unwrap_err().to_string();
        assert!(err.contains("TIDINGS_DELIVERY_TIMEOUT"), "{err}");
        assert!(parse_timeout(Some("0s")).is_err());
    }
}
