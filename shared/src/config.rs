//! Configuration from environment variables, with a message naming the variable on a bad or
//! missing value. Used by the Lambda binaries.

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
pub fn optional(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `TIDINGS_DESTINATIONS`: `strict` (default: public HTTPS only) or `local` (http and
/// loopback allowed, for local testing).
pub fn destination_policy() -> Result<DestinationPolicy> {
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
pub fn retry_schedule() -> Result<crate::delivery::RetrySchedule> {
    match optional("TIDINGS_RETRY_SCHEDULE") {
        None => Ok(Default::default()),
        Some(raw) => raw.parse().map_err(|e| Error::internal(format!("TIDINGS_RETRY_SCHEDULE: {e}"))),
    }
}

/// `TIDINGS_PUBLISH_LIMIT_PER_MINUTE`: publishes one organization may make per minute (0 or
/// unset: no limit; the template sets 12000).
pub fn publishes_per_minute() -> Result<u32> {
    parse_publish_limit(optional("TIDINGS_PUBLISH_LIMIT_PER_MINUTE").as_deref())
}

fn parse_publish_limit(raw: Option<&str>) -> Result<u32> {
    match raw {
        None => Ok(0),
        Some(raw) => raw.trim().parse().map_err(|_| {
            Error::internal(format!("TIDINGS_PUBLISH_LIMIT_PER_MINUTE must be a whole number, not {raw:?}"))
        }),
    }
}

/// `TIDINGS_DELIVERY_TIMEOUT`: connect + total timeout of each delivery, e.g. `10s` (the
/// default) or `2500ms`.
pub fn delivery_timeout() -> Result<std::time::Duration> {
    parse_timeout(optional("TIDINGS_DELIVERY_TIMEOUT").as_deref())
}

fn parse_timeout(raw: Option<&str>) -> Result<std::time::Duration> {
    match raw {
        None => Ok(crate::destination::DEFAULT_TIMEOUT),
        Some(raw) => match humantime::parse_duration(raw.trim()) {
            Ok(timeout) if !timeout.is_zero() => Ok(timeout),
            _ => Err(Error::internal(format!("TIDINGS_DELIVERY_TIMEOUT must be a duration such as 10s, not {raw:?}"))),
        },
    }
}

/// The application a Lambda binary runs, from its environment.
///
/// `TIDINGS_BACKEND` selects the adapters: `aws` (the default) reads `TIDINGS_TABLE`,
/// `TIDINGS_QUEUE_URL`, `TIDINGS_DEAD_LETTER_QUEUE_URL` and `TIDINGS_SENDER`; `embedded` keeps
/// everything in the SQLite file under `TIDINGS_DATA_DIR` (for `cargo lambda watch`).
#[cfg(feature = "aws")]
pub async fn app_from_env() -> Result<crate::App> {
    use std::path::PathBuf;

    use crate::App;
    let policy = destination_policy()?;
    match optional("TIDINGS_BACKEND").as_deref().unwrap_or("aws") {
        "aws" => {
            let settings = AwsSettings::from_env()?;
            let mut app = App::aws(&crate::aws::load_config().await, &settings, policy)?;
            app.publishes_per_minute = publishes_per_minute()?;
            app.delivery.schedule = retry_schedule()?;
            app.set_request_timeout(delivery_timeout()?)?;
            Ok(app)
        }
        "embedded" => {
            let mut app = App::embedded_default(&PathBuf::from(required("TIDINGS_DATA_DIR")?), policy)?;
            app.publishes_per_minute = publishes_per_minute()?;
            app.delivery.schedule = retry_schedule()?;
            app.set_request_timeout(delivery_timeout()?)?;
            Ok(app)
        }
        other => Err(Error::internal(format!("TIDINGS_BACKEND must be \"aws\" or \"embedded\", not {other:?}"))),
    }
}

/// Where the AWS resources are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    pub table: String,
    pub queue_url: String,
    /// Where retries go (the slow lane); the delivery queue itself when unset.
    pub retry_queue_url: Option<String>,
    pub dead_letter_queue_url: String,
    /// The SES-verified sender of alert mail.
    pub sender: String,
}

impl AwsSettings {
    pub fn from_env() -> Result<AwsSettings> {
        Ok(AwsSettings {
            table: required("TIDINGS_TABLE")?,
            queue_url: required("TIDINGS_QUEUE_URL")?,
            retry_queue_url: optional("TIDINGS_RETRY_QUEUE_URL"),
            dead_letter_queue_url: required("TIDINGS_DEAD_LETTER_QUEUE_URL")?,
            sender: required("TIDINGS_SENDER")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_publish_limit_is_a_whole_number_and_a_bad_one_names_the_variable() {
        assert_eq!(parse_publish_limit(None).unwrap(), 0);
        assert_eq!(parse_publish_limit(Some("12000")).unwrap(), 12_000);
        let err = parse_publish_limit(Some("lots")).unwrap_err().to_string();
        assert!(err.contains("TIDINGS_PUBLISH_LIMIT_PER_MINUTE"), "{err}");
    }

    #[test]
    fn timeouts_parse_with_units_and_bad_ones_name_the_variable() {
        assert_eq!(parse_timeout(None).unwrap(), crate::destination::DEFAULT_TIMEOUT);
        assert_eq!(parse_timeout(Some("2500ms")).unwrap(), std::time::Duration::from_millis(2500));
        let err = parse_timeout(Some("soon")).unwrap_err().to_string();
        assert!(err.contains("TIDINGS_DELIVERY_TIMEOUT"), "{err}");
        assert!(parse_timeout(Some("0s")).is_err());
    }
}
