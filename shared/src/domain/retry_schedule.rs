//! When failed deliveries are tried again.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::Rng;

/// The wait before each attempt: `delays[0]` before the first (normally zero), `delays[n]`
/// before attempt n + 1. After the last attempt fails the job is dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
}

/// Immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: eight attempts over about 28 hours.
const DEFAULT_SCHEDULE: &str = "0s,5s,5m,30m,2h,5h,10h,10h";

/// Each wait is stretched or shrunk by up to this fraction, so receivers that fail together do
/// not get retried together.
const JITTER: f64 = 0.2;

impl Default for RetrySchedule {
    fn default() -> Self {
        DEFAULT_SCHEDULE.parse().expect("the default schedule parses")
    }
}

impl RetrySchedule {
    pub fn new(delays: Vec<Duration>) -> Result<Self, String> {
        if delays.is_empty() {
            return Err("a retry schedule needs at least one attempt".into());
        }
        Ok(RetrySchedule { delays })
    }

    /// How many attempts a job gets.
    pub fn attempts(&self) -> u32 {
        self.delays.len() as u32
    }

    /// The wait after attempt `attempt` (1-based) failed, jittered; `None` when it was the last.
    pub(crate) fn next_delay(&self, attempt: u32) -> Option<Duration> {
        let base = *self.delays.get(attempt as usize)?;
        if base.is_zero() {
            return Some(base);
        }
        let factor = rand::rng().random_range(1.0 - JITTER..=1.0 + JITTER);
        Some(base.mul_f64(factor))
    }
}

impl FromStr for RetrySchedule {
    type Err = String;

    /// A comma-separated list of durations such as `0s,5s,5m,30m,2h`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let delays = s
            .split(',')
            .map(|part| {
                humantime::parse_duration(part.trim())
                    .map_err(|e| format!("{:?} in the retry schedule is not a duration ({e})", part.trim()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        RetrySchedule::new(delays)
    }
}

impl fmt::Display for RetrySchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.delays.iter().map(|d| humantime::format_duration(*d).to_string()).collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedule_spans_about_a_day() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.attempts(), 8);
        let total: Duration = schedule.delays.iter().sum();
        assert_eq!(total, Duration::from_secs(5 + 5 * 60 + 30 * 60 + (2 + 5 + 10 + 10) * 3600));
    }

    #[test]
    fn next_delay_is_jittered_and_ends() {
        let schedule: RetrySchedule = "0s,10s,1m".parse().unwrap();
        for _ in 0..100 {
            let d = schedule.next_delay(1).unwrap();
            assert!(d >= Duration::from_secs(8) && d <= Duration::from_secs(12), "{d:?}");
        }
        assert!(schedule.next_delay(2).unwrap() >= Duration::from_secs(48));
        assert_eq!(schedule.next_delay(3), None);
    }

    #[test]
    fn bad_schedules_are_refused() {
        assert!("".parse::<RetrySchedule>().is_err());
        assert!("5s,soon".parse::<RetrySchedule>().unwrap_err().contains("soon"));
        assert_eq!("0s, 200ms".parse::<RetrySchedule>().unwrap().delays, &[Duration::ZERO, Duration::from_millis(200)]);
    }
}
