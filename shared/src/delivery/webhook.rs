//! Building and sending one webhook request: the dialect's envelope and headers, the Standard
//! Webhooks headers on top, and the POST itself. Used by the destination check on create and by
//! every delivery.

use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::destination::{DestinationPolicy, HttpClient};
use crate::domain::{Message, Subscription};
use crate::signing;

/// How much of a response body is kept with an attempt.
const RESPONSE_EXCERPT_BYTES: usize = 1024;

/// A signed request, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// Builds the signed request for `subscription` in its dialect.
pub fn build(subscription: &Subscription, message: &Message<'_>) -> Webhook {
    // During a key rotation's overlap the dialect's single signature uses the oldest key still
    // valid, and Standard Webhooks carries one signature per valid key, the newest first.
    let single_key = subscription.single_signature_key_at(message.timestamp);
    let envelope = (crate::dialect::spec(subscription.dialect).envelope)(subscription, message, single_key);
    let body = envelope.body;
    let mut headers = vec![("content-type", "application/json".to_owned())];
    headers.extend(envelope.headers);
    let webhook_id = message.message_uuid.to_string();
    let unix = message.timestamp.unix_timestamp();
    let signature = subscription
        .signing_keys_at(message.timestamp)
        .iter()
        .map(|key| signing::standard_webhooks_signature(key.as_bytes(), &webhook_id, unix, &body))
        .collect::<Vec<_>>()
        .join(" ");
    headers.push(("webhook-id", webhook_id));
    headers.push(("webhook-timestamp", unix.to_string()));
    headers.push(("webhook-signature", signature));
    Webhook { headers, body }
}

/// The payload `subscription` is sent of a message: as published, or what its transformation
/// makes of it (an error says why it could not: nothing is then sent).
pub fn payload_for<'p>(
    transformations: &crate::app::Transformations,
    subscription: &Subscription,
    message: &Message<'p>,
) -> Result<std::borrow::Cow<'p, str>, String> {
    let Some(compiled) = transformations.of(subscription) else {
        return Ok(std::borrow::Cow::Borrowed(message.payload));
    };
    let document = crate::domain::transformation::document(
        message.event_name,
        message.message_id,
        &crate::domain::utc_timestamp(message.published_at),
        message.payload,
    )?;
    Ok(std::borrow::Cow::Owned(compiled?.apply(&document, crate::domain::message::MAX_PAYLOAD_BYTES)?))
}

/// What happened when a webhook was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The HTTP status, if the destination answered.
    pub status: Option<u16>,
    pub latency: Duration,
    /// The first bytes of the response body.
    pub response_excerpt: String,
    /// Why no answer came (connection, DNS, TLS, timeout, refused address).
    pub error: Option<String>,
    /// How long the receiver asked to be left alone (`Retry-After` on a 429 or 503).
    pub retry_after: Option<Duration>,
}

impl Attempt {
    pub(crate) fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// A failed attempt without an answer.
    pub fn failed(error: String, latency: Duration) -> Attempt {
        Attempt { status: None, latency, response_excerpt: String::new(), error: Some(error), retry_after: None }
    }
}

/// `Retry-After` in seconds or as an HTTP date, as a wait from `now`; `None` when unreadable.
fn parse_retry_after(value: &str, now: OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    Some(Duration::try_from(at - now).unwrap_or(Duration::ZERO))
}

/// POSTs the webhook and records the outcome. Never fails: every failure is an [`Attempt`].
/// The destination is checked against `policy` again first: a literal address never passes
/// through the client's resolver, and the policy may have tightened since it was stored. At most
/// [`RESPONSE_EXCERPT_BYTES`] of the answer are read.
pub async fn send(client: &HttpClient, policy: DestinationPolicy, destination: &str, webhook: &Webhook) -> Attempt {
    let started = Instant::now();
    let url = match policy.check(destination) {
        Ok(url) => url,
        Err(reason) => return Attempt::failed(format!("refused: {reason}"), started.elapsed()),
    };
    match client.post(&url, &webhook.headers, webhook.body.clone(), RESPONSE_EXCERPT_BYTES).await {
        Ok(response) => Attempt {
            status: Some(response.status),
            latency: started.elapsed(),
            response_excerpt: String::from_utf8_lossy(&response.excerpt).into_owned(),
            error: None,
            // Only where the status means "later": 429 Too Many Requests, 503 Service Unavailable.
            retry_after: matches!(response.status, 429 | 503)
                .then(|| response.retry_after.as_deref().and_then(|v| parse_retry_after(v, OffsetDateTime::now_utc())))
                .flatten(),
        },
        Err(error) => Attempt::failed(error, started.elapsed()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    use crate::domain::Dialect;
    use crate::domain::OrganizationId;

    fn subscription() -> Subscription {
        let org = OrganizationId(Uuid::nil());
        Subscription::new(org, Uuid::nil(), Dialect::Zettle, vec![], "https://example.com", OffsetDateTime::UNIX_EPOCH)
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = OffsetDateTime::from_unix_timestamp(784_111_777).unwrap(); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:51:37 GMT", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:40:00 GMT", now), Some(Duration::ZERO), "in the past");
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn zettle_envelope_is_signed_both_ways() {
        let sub = subscription();
        let message = Message {
            message_uuid: Uuid::from_u128(7),
            message_id: "m-1",
            event_name: "ProductUpdated",
            payload: r#"{"uuid":"p"}"#,
            published_at: OffsetDateTime::from_unix_timestamp(1_616_000_000).unwrap(),
            timestamp: OffsetDateTime::from_unix_timestamp(1_616_000_000).unwrap(),
        };
        let hook = build(&sub, &message);
        let body: serde_json::Value = serde_json::from_slice(&hook.body).unwrap();
        assert_eq!(body["payload"], r#"{"uuid":"p"}"#);
        assert_eq!(body["eventName"], "ProductUpdated");
        assert_eq!(body["timestamp"], "2021-03-17T16:53:20Z");
        let header = |n: &str| hook.headers.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone()).unwrap();
        assert_eq!(
            header("x-izettle-signature"),
            crate::dialect::zettle::signature(&sub.signing_key, "2021-03-17T16:53:20Z", r#"{"uuid":"p"}"#)
        );
        assert!(signing::verify_standard_webhooks(
            sub.signing_key.as_bytes(),
            &header("webhook-id"),
            header("webhook-timestamp").parse().unwrap(),
            &hook.body,
            &header("webhook-signature"),
        ));
    }
}
