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
    /// Only messages this event pattern matches are sent (see [`super::filter`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<super::EventFilter>,
    /// The payload sent is what this makes of the message (see [`super::transformation`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transformation: Option<super::Transformation>,
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
    /// Which setting of the limit this is (when it was set, Unix nanoseconds): a changed limit
    /// gets a new version, and the slots booked under an older one are void. Stored, never
    /// answered by the API.
    #[serde(default, skip_serializing_if = "is_unversioned")]
    pub version: i64,
}

fn is_unversioned(version: &i64) -> bool {
    *version == 0
}

/// The fastest limit one may set. On AWS a subscription's slots are one DynamoDB item, which
/// takes about 1,000 write units a second, and a reservation costs at most one a job (less when
/// a batch's jobs reserve together): 1,000 a second holds however the jobs arrive.
pub const MAX_PER_SECOND: u32 = 1_000;

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
        Ok(RateLimit { per_second, burst, version: 0 })
    }

    /// Whether `other` limits the same way (whatever its version).
    pub fn same_pace(&self, other: &RateLimit) -> bool {
        (self.per_second, self.burst) == (other.per_second, other.burst)
    }

    /// The spacing of requests: one slot per interval.
    pub fn interval(&self) -> Duration {
        // Rounded up: 10 s never holds one slot more than the limit allows (at 3/s, 30
        // intervals rounded down end short of 10 s, and the window holds 31).
        Duration::from_nanos(1_000_000_000u64.div_ceil(u64::from(self.per_second.max(1))))
    }

    /// How late a request may go after its slot: the burst beyond the one request a slot
    /// always allows. Requests sent within `(burst − 1)` intervals after slots one interval
    /// apart put at most `perSecond × 10 + burst − 1` in any 10 s: one request short of the
    /// promise, which is what the network's jitter may move across a window's edge before the
    /// receiver counts it. (Up to `burst` intervals would keep the promise at the sender and
    /// leave the receiver nothing.)
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
        assert_eq!(RateLimit::new(50, None).unwrap(), RateLimit { per_second: 50, burst: 5, version: 0 });
        assert_eq!(RateLimit::new(1, None).unwrap().burst, 1);
        assert!(RateLimit::new(0, None).unwrap_err().contains("perSecond"));
        assert!(RateLimit::new(MAX_PER_SECOND + 1, None).is_err());
        assert!(RateLimit::new(5, Some(0)).unwrap_err().contains("burst"));
        assert!(RateLimit::new(5, Some(51)).unwrap_err().contains("burst"));
        let limit = RateLimit::new(50, Some(5)).unwrap();
        assert_eq!(limit.interval(), Duration::from_millis(20));
        assert_eq!(limit.grace(), Duration::from_millis(80));
        assert_eq!(RateLimit::new(10, Some(1)).unwrap().grace(), Duration::ZERO, "burst 1: none");
        assert_eq!(RateLimit::new(1, Some(10)).unwrap().grace(), Duration::from_secs(1), "at most a second");
    }

    #[test]
    fn options_default_to_unlimited_and_unordered_and_serialize_only_what_is_set() {
        assert!(DeliveryOptions::default().is_default());
        assert_eq!(serde_json::to_string(&DeliveryOptions::default()).unwrap(), "{}");
        let options = DeliveryOptions { rate_limit: RateLimit::new(2, None).ok(), ordered: true, ..Default::default() };
        let json = serde_json::to_string(&options).unwrap();
        assert_eq!(json, r#"{"rateLimit":{"perSecond":2,"burst":1},"ordered":true}"#);
        assert_eq!(serde_json::from_str::<DeliveryOptions>(&json).unwrap(), options);
        let versioned = RateLimit { version: 7, ..RateLimit::new(2, None).unwrap() };
        assert_eq!(serde_json::to_string(&versioned).unwrap(), r#"{"perSecond":2,"burst":1,"version":7}"#);
        assert!(versioned.same_pace(&RateLimit::new(2, Some(1)).unwrap()));
        assert!(!versioned.same_pace(&RateLimit::new(2, Some(2)).unwrap()));
    }

    /// The grace's promise, counted: requests each sent up to the grace after its slot, at the
    /// worst (every one as late as allowed, or alternately on time and late), never put more
    /// than `rate × 10 + burst − 1` in any 10 s window, wherever it starts: one under the
    /// promise, left for the network's jitter.
    #[test]
    fn requests_sent_within_the_grace_keep_the_promise_in_every_ten_seconds() {
        for (per_second, burst) in [(1, 1), (3, 1), (7, 2), (10, 1), (50, 5), (333, 3)] {
            let limit = RateLimit::new(per_second, Some(burst)).unwrap();
            let (interval, grace) = (limit.interval().as_nanos() as i128, limit.grace().as_nanos() as i128);
            let slots = (per_second as i128) * 30;
            for pattern in 0..3 {
                let sent: Vec<i128> = (0..slots)
                    .map(|k| {
                        let late = match pattern {
                            0 => grace,
                            1 => {
                                if k % 2 == 0 {
                                    0
                                } else {
                                    grace
                                }
                            }
                            _ => {
                                if k % (burst as i128 + 1) == 0 {
                                    0
                                } else {
                                    grace
                                }
                            }
                        };
                        k * interval + late
                    })
                    .collect();
                let window = 10_000_000_000i128;
                let most = (0..sent.len())
                    .map(|start| sent[start..].iter().take_while(|t| **t < sent[start] + window).count())
                    .max()
                    .unwrap();
                let sent_at_most = per_second as usize * 10 + burst as usize - 1;
                assert!(
                    most <= sent_at_most,
                    "{per_second}/s burst {burst} pattern {pattern}: {most} > {sent_at_most}"
                );
            }
        }
    }
}
