//! The probe gate: a failing endpoint gets one request at a time from this process (on Lambda:
//! per warm instance; the claims are `App::delivery_probes`), and the jobs that find it taken
//! wait without spending an attempt.

use std::time::Duration;

use crate::domain::DeliveryJob;

/// What a job of a failing endpoint probes: the whole subscription (`None`), or only its key's
/// line. An ordered subscription's keys already go one message at a time each; while its
/// endpoint has failed for less than the delivery timeout (a message failed, and no request
/// has succeeded since), a key's failure holds only that key and the others keep their pace.
/// Failing longer, the endpoint looks down, and it is probed one request at a time, whatever
/// its keys.
pub(crate) fn probed_line(job: &DeliveryJob, failing_for: time::Duration, delivery_timeout: Duration) -> Option<&str> {
    let briefly = Duration::try_from(failing_for).is_ok_and(|failing_for| failing_for < delivery_timeout)
        || failing_for.is_negative();
    job.line.as_deref().filter(|_| briefly)
}

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
    fn an_ordered_job_probes_its_key_while_the_failure_is_brief_and_the_subscription_after() {
        let timeout = Duration::from_secs(10);
        let org = crate::domain::OrganizationId(uuid::Uuid::new_v4());
        let message =
            crate::domain::PublishRecord::new(org, "m-1", "ProductCreated", "{}", 1, time::OffsetDateTime::now_utc());
        let unordered = DeliveryJob::new(&message, uuid::Uuid::new_v4());
        let ordered = DeliveryJob { line: Some("order-7".into()), ..unordered.clone() };
        assert_eq!(probed_line(&ordered, time::Duration::seconds(2), timeout), Some("order-7"));
        assert_eq!(probed_line(&ordered, time::Duration::seconds(10), timeout), None, "failing for the timeout");
        assert_eq!(probed_line(&unordered, time::Duration::ZERO, timeout), None, "unordered");
    }

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
