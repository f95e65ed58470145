//! How a subscription wants its deliveries: at most so many requests a second, and in order by a
//! key. Both are promises to the receiver, kept by `delivery` on every host.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A subscription's delivery options; the default is unlimited and unordered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryOptions {
    /// At most this many requests a second reach the receiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Messages of one ordering key are delivered one after another, in publish order.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ordered: bool,
}

impl DeliveryOptions {
    pub fn is_default(&self) -> bool {
        *self == DeliveryOptions::default()
    }
}

/// A delivery rate limit: over any 10 s the receiver sees at most `per_second × 10 + burst`
/// requests (over any span `t`, at most `per_second × t + burst`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

/// The fastest limit one may set; beyond it, a limit protects no receiver.
pub const MAX_PER_SECOND: u32 = 10_000;

impl RateLimit {
    /// A limit of `per_second`, with `burst` (default: a tenth of a second's worth, at least 1).
    pub fn new(per_second: u32, burst: Option<u32>) -> Result<RateLimit, String> {
        if !(1..=MAX_PER_SECOND).contains(&per_second) {
            return Err(format!("perSecond must be 1 to {MAX_PER_SECOND}"));
        }
        let burst = burst.unwrap_or(per_second.div_ceil(10));
        if !(1..=per_second.saturating_mul(10)).contains(&burst) {
            return Err(format!("burst must be 1 to {} (ten seconds' worth)", per_second * 10));
        }
        Ok(RateLimit { per_second, burst })
    }

    /// The spacing of requests: one slot per interval.
    pub fn interval(&self) -> Duration {
        Duration::from_secs(1) / self.per_second.max(1)
    }

    /// How late a request may go after its slot without breaking the promise: the burst beyond
    /// the one request a slot always allows.
    pub fn grace(&self) -> Duration {
        (self.interval() * self.burst.saturating_sub(1)).min(Duration::from_secs(1))
    }
}

/// Ordering keys are up to this long (the `orderingKey` of a publish).
pub const MAX_ORDERING_KEY_LEN: usize = 128;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_checks_its_bounds_and_defaults_its_burst() {
        assert_eq!(RateLimit::new(50, None).unwrap(), RateLimit { per_second: 50, burst: 5 });
        assert_eq!(RateLimit::new(1, None).unwrap().burst, 1);
        assert!(RateLimit::new(0, None).unwrap_err().contains("perSecond"));
        assert!(RateLimit::new(MAX_PER_SECOND + 1, None).is_err());
        assert!(RateLimit::new(5, Some(0)).unwrap_err().contains("burst"));
        assert!(RateLimit::new(5, Some(51)).unwrap_err().contains("burst"));
        let limit = RateLimit::new(50, Some(5)).unwrap();
        assert_eq!(limit.interval(), Duration::from_millis(20));
        assert_eq!(limit.grace(), Duration::from_millis(80));
        assert_eq!(RateLimit::new(1, Some(10)).unwrap().grace(), Duration::from_secs(1), "at most a second");
    }

    #[test]
    fn options_default_to_unlimited_and_unordered_and_serialize_only_what_is_set() {
        assert!(DeliveryOptions::default().is_default());
        assert_eq!(serde_json::to_string(&DeliveryOptions::default()).unwrap(), "{}");
        let options = DeliveryOptions { rate_limit: RateLimit::new(2, None).ok(), ordered: true };
        let json = serde_json::to_string(&options).unwrap();
        assert_eq!(json, r#"{"rateLimit":{"perSecond":2,"burst":1},"ordered":true}"#);
        assert_eq!(serde_json::from_str::<DeliveryOptions>(&json).unwrap(), options);
    }
}
