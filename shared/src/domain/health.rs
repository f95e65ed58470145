//! A subscription's delivery health over a window: what became of its messages, how many
//! attempts, how many answered 2xx, how fast, hour by hour. Computed from its attempts;
//! nothing more is stored.

use serde::Serialize;
use time::OffsetDateTime;

use super::AttemptRecord;

/// Delivery health over `[since, until)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryHealth {
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
    /// What became of the messages attempted in the window (by their attempts in it).
    pub messages: MessageHealth,
    pub attempts: u32,
    /// Attempts answered 2xx.
    pub delivered: u32,
    pub failed: u32,
    /// `delivered / attempts`; absent without attempts.
    pub success_rate: Option<f64>,
    /// Latency percentiles of every attempt (nearest rank); absent without attempts.
    pub latency_p50_ms: Option<u64>,
    pub latency_p99_ms: Option<u64>,
    /// One bucket an hour, oldest first, from the hour `since` falls in.
    pub hourly: Vec<HourlyHealth>,
    /// False when the window held more attempts than were read: the figures are those of the
    /// newest ones.
    pub complete: bool,
}

/// The messages attempted in a window, each counted once: delivered (an attempt answered 2xx),
/// failed (its last attempt sent it to the dead letters), or still retrying.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageHealth {
    pub total: u32,
    pub delivered: u32,
    pub failed: u32,
    pub retrying: u32,
}

impl MessageHealth {
    fn of(attempts: &[&AttemptRecord]) -> Self {
        // Per message: delivered by any attempt, else as its latest attempt left it.
        let mut latest: std::collections::HashMap<&str, (bool, &AttemptRecord)> = std::collections::HashMap::new();
        for a in attempts {
            let entry = latest.entry(&a.message_id).or_insert((false, a));
            entry.0 |= a.delivered();
            if (a.at, a.attempt) > (entry.1.at, entry.1.attempt) {
                entry.1 = a;
            }
        }
        latest.values().fold(MessageHealth::default(), |mut health, (delivered, last)| {
            health.total += 1;
            match (delivered, last.dead_lettered) {
                (true, _) => health.delivered += 1,
                (false, true) => health.failed += 1,
                (false, false) => health.retrying += 1,
            }
            health
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HourlyHealth {
    #[serde(with = "time::serde::rfc3339")]
    pub hour: OffsetDateTime,
    pub attempts: u32,
    pub failed: u32,
}

impl DeliveryHealth {
    /// The health of `attempts` (those made in `[since, until)`; others are ignored).
    pub fn of(attempts: &[AttemptRecord], since: OffsetDateTime, until: OffsetDateTime, complete: bool) -> Self {
        let in_window: Vec<&AttemptRecord> = attempts.iter().filter(|a| since <= a.at && a.at < until).collect();
        let delivered = in_window.iter().filter(|a| a.delivered()).count() as u32;
        let total = in_window.len() as u32;
        let mut latencies: Vec<u64> = in_window.iter().map(|a| a.latency_ms).collect();
        latencies.sort_unstable();
        let first_hour =
            since.replace_minute(0).and_then(|t| t.replace_second(0)).and_then(|t| t.replace_nanosecond(0));
        let first_hour = first_hour.unwrap_or(since);
        let mut hourly = Vec::new();
        let mut hour = first_hour;
        while hour < until {
            let next = hour + time::Duration::HOUR;
            let of_hour = in_window.iter().filter(|a| hour <= a.at && a.at < next);
            let (attempts, failed) = of_hour.fold((0, 0), |(n, f), a| (n + 1, f + u32::from(!a.delivered())));
            hourly.push(HourlyHealth { hour, attempts, failed });
            hour = next;
        }
        DeliveryHealth {
            since,
            until,
            messages: MessageHealth::of(&in_window),
            attempts: total,
            delivered,
            failed: total - delivered,
            success_rate: (total > 0).then(|| f64::from(delivered) / f64::from(total)),
            latency_p50_ms: percentile(&latencies, 50),
            latency_p99_ms: percentile(&latencies, 99),
            hourly,
            complete,
        }
    }
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: usize) -> Option<u64> {
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OrganizationId;

    fn attempt(at: OffsetDateTime, status: Option<u16>, latency_ms: u64) -> AttemptRecord {
        AttemptRecord {
            organization: OrganizationId(uuid::Uuid::nil()),
            subscription_id: uuid::Uuid::nil(),
            message_id: "m".into(),
            event_name: "ProductCreated".into(),
            attempt: 1,
            at,
            status,
            latency_ms,
            response_excerpt: String::new(),
            error: None,
            request_headers: Vec::new(),
            dead_lettered: false,
        }
    }

    #[test]
    fn health_counts_rates_percentiles_and_hours() {
        let until = OffsetDateTime::from_unix_timestamp(1_800_003_600 + 1_800).unwrap(); // xx:30
        let since = until - time::Duration::hours(2);
        let mut attempts: Vec<AttemptRecord> =
            (1..=100).map(|ms| attempt(until - time::Duration::minutes(10), Some(200), ms)).collect();
        attempts.push(attempt(since + time::Duration::minutes(1), Some(500), 1_000));
        attempts.push(attempt(since + time::Duration::minutes(2), None, 2_000));
        attempts.push(attempt(since - time::Duration::minutes(1), Some(500), 9_999)); // before the window
        let health = DeliveryHealth::of(&attempts, since, until, true);
        assert_eq!((health.attempts, health.delivered, health.failed), (102, 100, 2));
        assert_eq!(health.success_rate, Some(100.0 / 102.0));
        assert_eq!(health.latency_p50_ms, Some(51));
        assert_eq!(health.latency_p99_ms, Some(1_000));
        // From the hour `since` falls in: xx:30 two hours back spans three hours.
        assert_eq!(health.hourly.len(), 3);
        assert_eq!(health.hourly.iter().map(|h| h.attempts).sum::<u32>(), 102);
        assert_eq!(health.hourly[0].failed, 2);
        assert_eq!(health.hourly[2].attempts, 100);
        assert_eq!(health.hourly[0].hour.minute(), 0);

        assert_eq!(health.messages, MessageHealth { total: 1, delivered: 1, failed: 0, retrying: 0 }, "all message m");

        let empty = DeliveryHealth::of(&[], since, until, true);
        assert_eq!((empty.attempts, empty.success_rate, empty.latency_p99_ms), (0, None, None));
        assert_eq!(empty.hourly.len(), 3);
        assert_eq!(empty.messages, MessageHealth::default());
    }

    /// 3 of 5 messages got through (two after a retry), one was dead-lettered, one waits for its
    /// retry: 60 % of messages, 3 of 8 attempts. A replay that delivers the dead letter makes it
    /// delivered.
    #[test]
    fn messages_are_counted_once_by_what_became_of_them() {
        let until = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let since = until - time::Duration::hours(24);
        let at = |minutes: i64| until - time::Duration::minutes(minutes);
        let of = |message: &str, n: u32, minutes: i64, status: u16, dead_lettered: bool| AttemptRecord {
            message_id: message.into(),
            attempt: n,
            dead_lettered,
            ..attempt(at(minutes), Some(status), 5)
        };
        let mut attempts = vec![
            of("a", 1, 50, 200, false),
            of("b", 1, 50, 500, false),
            of("b", 2, 40, 200, false),
            of("c", 1, 50, 503, false),
            of("c", 2, 40, 200, false),
            of("d", 1, 50, 500, false),
            of("d", 2, 40, 500, true),
            of("e", 1, 5, 500, false),
        ];
        let health = DeliveryHealth::of(&attempts, since, until, true);
        assert_eq!(health.messages, MessageHealth { total: 5, delivered: 3, failed: 1, retrying: 1 });
        assert_eq!((health.attempts, health.delivered), (8, 3));
        attempts.push(of("d", 3, 1, 200, false));
        let replayed = DeliveryHealth::of(&attempts, since, until, true);
        assert_eq!(replayed.messages, MessageHealth { total: 5, delivered: 4, failed: 0, retrying: 1 });
    }
}
