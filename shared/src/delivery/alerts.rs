//! Fallback alerts: one email to the subscription's contact when its deliveries are exhausted
//! or it gets disabled, at most one per subscription per window however many messages fail.

use super::webhook::Attempt;
use crate::config::DeliverySettings;
use crate::domain::{utc_timestamp, Subscription};
use crate::ports::{Email, ReceivedJob};
use crate::App;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// A message used up its attempts and was dead-lettered.
    Exhausted,
    /// The subscription failed for so long that it was disabled.
    Disabled,
    /// The receiver answered 410 Gone, so the subscription was disabled at once.
    Gone,
    /// The subscription's transformation could not make a message's payload: nothing was sent.
    Transformation,
}

/// Sends the alert unless one went out within the window. A mail failure is logged, never
/// allowed to fail the delivery bookkeeping.
pub(crate) async fn notify(
    app: &App,
    subscription: &Subscription,
    received: &ReceivedJob,
    attempt: &Attempt,
    reason: Reason,
) {
    let Some(to) = subscription.contact_email.as_deref() else {
        // No one to tell (Lagerkoll webhooks name no contact): the attempts and the
        // dead-letter queue keep the record.
        return;
    };
    let now = app.clock.now();
    match app.store.claim_alert(subscription.organization, subscription.id, now, app.delivery.alert_window).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(err) => {
            tracing::error!(subscription = %subscription.id, error = %err, "cannot claim the alert window");
            return;
        }
    }
    let email = compose(to, subscription, received, attempt, reason, now, &app.delivery);
    match app.mailer.send(&email).await {
        Ok(()) => tracing::warn!(subscription = %subscription.id, to = %email.to, "alert sent"),
        Err(err) => {
            crate::metrics::alert_failed();
            tracing::error!(subscription = %subscription.id, error = %err, "alert email failed")
        }
    }
}

fn describe(attempt: &Attempt) -> String {
    match (attempt.status, &attempt.error) {
        (Some(status), _) if attempt.response_excerpt.is_empty() => format!("HTTP {status}"),
        (Some(status), _) => {
            format!("HTTP {status}: {}", attempt.response_excerpt.chars().take(200).collect::<String>())
        }
        (None, Some(error)) => error.clone(),
        (None, None) => "no response".into(),
    }
}

/// A length of time as an alert says it: `5 days`, `1 day`, `12 hours`, `90 minutes`.
fn spoken(span: time::Duration) -> String {
    let plural = |n: i64, unit: &str| if n == 1 { format!("1 {unit}") } else { format!("{n} {unit}s") };
    if span.whole_days() > 0 && span == time::Duration::days(span.whole_days()) {
        plural(span.whole_days(), "day")
    } else if span.whole_hours() > 0 && span == time::Duration::hours(span.whole_hours()) {
        plural(span.whole_hours(), "hour")
    } else {
        plural(span.whole_minutes().max(1), "minute")
    }
}

/// The alert to `to` about `subscription`, stating the configured disable-after and alert window.
fn compose(
    to: &str,
    subscription: &Subscription,
    received: &ReceivedJob,
    attempt: &Attempt,
    reason: Reason,
    now: time::OffsetDateTime,
    settings: &DeliverySettings,
) -> Email {
    let (job, attempts) = (&received.job, received.attempt);
    let disable_after = spoken(settings.disable_after);
    let (org, id) = (subscription.organization, subscription.id);
    let (subject, state) = match reason {
        Reason::Exhausted => (
            format!("Tidings: webhook deliveries to {} are failing", subscription.destination),
            format!(
                "The subscription is now FAILING. New messages are still attempted; after {disable_after} of \
                 nothing but failures it is disabled."
            ),
        ),
        Reason::Disabled => (
            format!("Tidings: webhook subscription {id} has been disabled"),
            format!(
                "Every delivery has failed for {disable_after}, so the subscription is now DISABLED: no more \
                 attempts are made. Update the subscription (PUT) to enable it again."
            ),
        ),
        Reason::Gone => (
            format!("Tidings: webhook subscription {id} has been disabled (410 Gone)"),
            "The destination answered 410 Gone, which means it no longer takes webhooks, so the \
             subscription is now DISABLED: no more attempts are made, and its messages are kept. Update \
             the subscription (PUT) to enable it again."
                .to_owned(),
        ),
        Reason::Transformation => (
            format!("Tidings: the transformation of webhook subscription {id} failed"),
            "The subscription's transformation could not make this message's payload (see Last error), so \
             nothing was sent and the message was not retried. Fix the transformation (PUT \
             …/delivery-options, or the portal's editor, which previews it) and replay the message."
                .to_owned(),
        ),
    };
    let text = format!(
        "Deliveries to one of your webhook subscriptions keep failing.\n\
         \n\
         Subscription:  {id}\n\
         Organization:  {org}\n\
         Destination:   {destination}\n\
         Event:         {event} (message {message_id})\n\
         Attempts:      {attempts}, the last at {at}\n\
         Last error:    {error}\n\
         \n\
         {state}\n\
         \n\
         The message is kept in the dead-letter queue. Once the destination answers again, replay it:\n\
         \n\
         \x20 API: POST /organizations/{org}/subscriptions/{id}/replay  {{\"messageId\": \"{message_id}\"}}\n\
         \x20 CLI: tidings replay --org {org} --subscription {id} --message {message_id}\n\
         \n\
         or replay every dead-lettered message with: tidings replay --dead-letters\n\
         Recent attempts: GET /organizations/{org}/subscriptions/{id}/attempts\n\
         \n\
         You get at most one of these emails per subscription every {window}.\n",
        destination = subscription.destination,
        event = job.event_name,
        message_id = job.message_id,
        at = utc_timestamp(now),
        error = describe(attempt),
        window = spoken(settings.alert_window).trim_start_matches("1 "),
    );
    Email { to: to.to_owned(), subject, text }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DeliveryJob, Dialect, OrganizationId, PublishRecord};

    fn alert(settings: &DeliverySettings, reason: Reason) -> Email {
        let now = time::OffsetDateTime::UNIX_EPOCH;
        let org = OrganizationId(uuid::Uuid::nil());
        let subscription =
            Subscription::new(org, uuid::Uuid::nil(), Dialect::Zettle, vec![], "https://example.com", now);
        let record = PublishRecord::new(org, "m-1", "ProductCreated", "{}", 1, now);
        let received = ReceivedJob::new("r".into(), DeliveryJob::new(&record, subscription.id));
        let attempt = Attempt::failed("connection refused".into(), std::time::Duration::ZERO);
        compose("ops@example.com", &subscription, &received, &attempt, reason, now, settings)
    }

    #[test]
    fn the_alert_states_the_configured_disable_after_and_window() {
        let defaults = DeliverySettings::default();
        assert!(alert(&defaults, Reason::Exhausted).text.contains("after 5 days of nothing but failures"));
        assert!(alert(&defaults, Reason::Disabled).text.contains("has failed for 5 days"));
        assert!(alert(&defaults, Reason::Disabled).text.contains("per subscription every day."));
        assert!(alert(&defaults, Reason::Transformation).subject.contains("transformation"));
        assert!(alert(&defaults, Reason::Transformation).text.contains("not retried"));
        let custom = DeliverySettings {
            disable_after: time::Duration::hours(36),
            alert_window: time::Duration::hours(6),
            ..DeliverySettings::default()
        };
        let text = alert(&custom, Reason::Exhausted).text;
        assert!(text.contains("after 36 hours of nothing but failures"), "{text}");
        assert!(text.contains("per subscription every 6 hours."), "{text}");
        assert!(!text.contains("5 days"), "{text}");
    }
}
