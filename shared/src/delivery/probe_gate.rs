//! The probe gate: a failing endpoint gets one request at a time from this process (on Lambda:
//! per warm instance; the claims are `App::delivery_probes`), and the jobs that find it taken
//! wait without spending an attempt.

use std::time::Duration;

/// How long a job waits while its failing endpoint is being probed by another request: at
/// least as long as that probe may take (the delivery timeout), and longer the longer the
/// endpoint has been failing (up to [`MAX_PROBE_WAIT`]), so a long-dead endpoint's backlog
/// costs a receive a job every few minutes, not every few seconds; jittered, so jobs put off
/// together do not come back together.
pub(crate) fn probe_wait(delivery_timeout: Duration, failing_for: time::Duration) -> Duration {
    use rand::Rng;
    let failing_for = Duration::try_from(failing_for).unwrap_or_default();
    let base = delivery_timeout.max(Duration::from_secs(1));
    failing_for.clamp(base, MAX_PROBE_WAIT.max(base)).mul_f64(rand::rng().random_range(1.0..=1.5))
}

/// The longest a job waits for its failing endpoint's probe before it looks again.
pub(crate) const MAX_PROBE_WAIT: Duration = Duration::from_secs(5 * 60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_wait_is_the_timeout_at_least_grows_with_the_failure_and_is_jittered() {
        let timeout = Duration::from_secs(10);
        let waits: Vec<Duration> = (0..50).map(|_| probe_wait(timeout, time::Duration::ZERO)).collect();
        assert!(waits.iter().all(|w| (timeout..=timeout.mul_f64(1.5)).contains(w)), "{waits:?}");
        assert!(waits.iter().any(|w| *w != waits[0]), "jittered");
        let minute = probe_wait(timeout, time::Duration::minutes(1));
        assert!((Duration::from_secs(60)..=Duration::from_secs(90)).contains(&minute), "{minute:?}");
        let day = probe_wait(timeout, time::Duration::days(1));
        assert!((MAX_PROBE_WAIT..=MAX_PROBE_WAIT.mul_f64(1.5)).contains(&day), "{day:?}");
        assert!(probe_wait(Duration::ZERO, time::Duration::ZERO) >= Duration::from_secs(1));
    }
}
