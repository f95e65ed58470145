//! How deliveries behave: the retry schedule, when a failing subscription is disabled, how
//! often its contact is mailed. The defaults are the documented ones.

use std::time::Duration;

use super::schedule::RetrySchedule;

/// How deliveries behave.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub schedule: RetrySchedule,
    /// A subscription whose deliveries have all failed for this long is disabled.
    pub disable_after: time::Duration,
    /// At most one alert email per subscription per window.
    pub alert_window: time::Duration,
    /// The longest wait a receiver's `Retry-After` can ask for.
    pub max_retry_after: Duration,
    /// How often the local worker purges attempts and messages past their retention (on AWS the
    /// table's TTL does it).
    pub purge_every: Duration,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            schedule: RetrySchedule::default(),
            disable_after: time::Duration::days(5),
            alert_window: time::Duration::hours(24),
            max_retry_after: Duration::from_secs(60 * 60),
            purge_every: Duration::from_secs(60),
        }
    }
}
