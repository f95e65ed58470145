//! Fallback alerts: one email to the subscription's contact when its deliveries are exhausted
//! or it gets disabled, at most one per subscription per window however many messages fail.

use crate::delivery::Attempt;
use crate::domain::{utc_timestamp, DeliveryJob, Subscription};
use crate::ports::Email;
use crate::App;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A message used up its attempts and was dead-lettered.
    Exhausted,
    /// The subscription failed for so long that it was disabled.
    Disabled,
    /// The receiver answered 410 Gone, so the subscription was disabled at once.
    Gone,
}

/// Sends the alert unless one went out within the window. A mail failure is logged, never
/// allowed to fail the delivery bookkeeping.
pub async fn notify(
    app: &App,
    subscription: &Subscription,
    job: &DeliveryJob,
    attempt: &Attempt,
    attempts: u32,
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
    let email = compose(to, subscription, job, attempt, attempts, reason, now);
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

/// The alert to `to` about `subscription`.
pub fn compose(
    to: &str,
    subscription: &Subscription,
    job: &DeliveryJob,
    attempt: &Attempt,
    attempts: u32,
    reason: Reason,
    now: time::OffsetDateTime,
) -> Email {
    let (org, id) = (subscription.organization, subscription.id);
    let (subject, state) = match reason {
        Reason::Exhausted => (
            format!("Tidings: webhook deliveries to {} are failing", subscription.destination),
            "The subscription is now FAILING. New messages are still attempted; after 5 days of nothing \
             but failures it is disabled."
                .to_owned(),
        ),
        Reason::Disabled => (
            format!("Tidings: webhook subscription {id} has been disabled"),
            "Every delivery has failed for 5 days, so the subscription is now DISABLED: no more attempts \
             are made. Update the subscription (PUT) to enable it again."
                .to_owned(),
        ),
        Reason::Gone => (
            format!("Tidings: webhook subscription {id} has been disabled (410 Gone)"),
            "The destination answered 410 Gone, which means it no longer takes webhooks, so the \
             subscription is now DISABLED: no more attempts are made, and its messages are kept. Update \
             the subscription (PUT) to enable it again."
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
         You get at most one of these emails per subscription per day.\n",
        destination = subscription.destination,
        event = job.event_name,
        message_id = job.message_id,
        at = utc_timestamp(now),
        error = describe(attempt),
    );
    Email { to: to.to_owned(), subject, text }
}
