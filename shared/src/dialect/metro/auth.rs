//! How Metro API clients authenticate: a request signed the way Metro's clients sign
//! (`X-Client-Id`, `X-Timestamp`, `X-Signature`), or the key itself (`Authorization: Bearer`,
//! `X-Api-Key`). The Metro API is closed to keys without `READ:ORDER`: every Metro event is an
//! order event.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::Mac;

use crate::api::request::{authenticate_with, session_caller};
use crate::api::route::{Caller, Request};
use crate::domain::{ApiKey, Scope};
use crate::signing::mac;
use crate::{App, Error, Result};

/// The caller of a Metro request, whose key or portal session must carry `READ:ORDER`. A
/// request with none of Metro's credentials may come from the portal, with its session.
pub(super) async fn authenticate_order_reader(app: &App, request: &Request) -> Result<Caller> {
    let caller = match session_caller(app, request, CREDENTIALS).await? {
        Some(caller) => caller,
        None => authenticate(app, request).await?.into(),
    };
    if !caller.key.scopes.contains(&Scope::ReadOrder) {
        return Err(Error::Forbidden("the API key lacks READ:ORDER, needed for order event subscriptions".into()));
    }
    Ok(caller)
}

/// The headers Metro's clients authenticate with.
const CREDENTIALS: &[&str] = &["authorization", "x-api-key", "x-client-id"];

/// How far a signed request's `X-Timestamp` may be from now (either way), against replays.
pub(crate) const SIGNATURE_WINDOW_SECONDS: i64 = 300;

/// The key of a request: signed the way Metro's API clients sign (`X-Client-Id`, `X-Timestamp`,
/// `X-Signature`), or carrying the key itself (`Authorization: Bearer`, `X-Api-Key`).
async fn authenticate(app: &App, request: &Request) -> Result<ApiKey> {
    let headers = request.headers();
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    let Some(client_id) = text("x-client-id") else {
        return authenticate_with(app, headers, Some("x-api-key")).await;
    };
    let refused = |why: &str| Error::Unauthenticated(format!("the request signature is not valid: {why}"));
    let (Some(timestamp), Some(signature)) = (text("x-timestamp"), text("x-signature")) else {
        return Err(refused("send X-Timestamp and X-Signature with X-Client-Id"));
    };
    let seconds: i64 = timestamp.parse().map_err(|_| refused("X-Timestamp must be Unix seconds"))?;
    // Milliseconds are accepted too: clients differ.
    let seconds = if seconds > 100_000_000_000 { seconds / 1000 } else { seconds };
    if (app.clock.now().unix_timestamp() - seconds).abs() > SIGNATURE_WINDOW_SECONDS {
        return Err(refused("X-Timestamp is more than 5 minutes from now"));
    }
    let key = app.keys.find(&*app.store, client_id).await?.ok_or_else(|| refused("unknown X-Client-Id"))?;
    if !key.is_usable_at(app.clock.now()) {
        return Err(refused("the key is revoked or expired"));
    }
    let secret = key.client_secret.as_deref().ok_or_else(|| refused("the key has no client secret"))?;
    // The URI as the client saw it: the path (with query), or the whole URL.
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let host = text("host");
    let mut uris = vec![path.to_owned()];
    if let Some(host) = host {
        uris.extend(["https", "http"].map(|scheme| format!("{scheme}://{host}{path}")));
    }
    let method = request.method().as_str();
    if !uris.iter().any(|uri| verify_request(secret, method, uri, request.body(), timestamp, signature)) {
        return Err(refused("X-Signature does not match"));
    }
    // A signed request that changes something is taken once: its signature is kept for as long
    // as its timestamp is accepted, on every instance. Reading again changes nothing.
    if !request.method().is_safe() {
        let expires_at = time::OffsetDateTime::from_unix_timestamp(seconds + SIGNATURE_WINDOW_SECONDS)
            .map_err(|_| refused("X-Timestamp is out of range"))?;
        if !app.store.use_once(&format!("metro-signature:{signature}"), app.clock.now(), expires_at).await? {
            return Err(refused("this signed request was already used; sign each request anew"));
        }
    }
    Ok(key)
}

/// The signed text of a Metro API client's request: `METHOD\nURI\nBODY\nTIMESTAMP`.
fn request_parts<'a>(method: &'a str, uri: &'a str, body: &'a [u8], timestamp: &'a str) -> [&'a [u8]; 7] {
    [method.as_bytes(), b"\n", uri.as_bytes(), b"\n", body, b"\n", timestamp.as_bytes()]
}

/// Checks a Metro client's `X-Signature` (base64 HMAC-SHA256 keyed by the client secret over
/// `METHOD\nURI\nBODY\nTIMESTAMP`) in constant time.
fn verify_request(client_secret: &str, method: &str, uri: &str, body: &[u8], timestamp: &str, signature: &str) -> bool {
    let Ok(candidate) = BASE64.decode(signature.trim()) else { return false };
    let mut mac = mac(client_secret.as_bytes());
    for part in request_parts(method, uri, body, timestamp) {
        mac.update(part);
    }
    mac.verify_slice(&candidate).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::hmac_parts;

    /// A Metro API client's `X-Signature`, as the client computes it.
    fn request_signature(client_secret: &str, method: &str, uri: &str, body: &[u8], timestamp: &str) -> String {
        BASE64.encode(hmac_parts(client_secret.as_bytes(), &request_parts(method, uri, body, timestamp)))
    }

    #[test]
    fn request_signatures_verify_and_catch_any_change() {
        let sig = request_signature("tds_secret", "POST", "/openapi/v1/subscriptions", b"{}", "1700000000");
        assert!(verify_request("tds_secret", "POST", "/openapi/v1/subscriptions", b"{}", "1700000000", &sig));
        for (secret, method, uri, body, ts) in [
            ("tds_other", "POST", "/openapi/v1/subscriptions", &b"{}"[..], "1700000000"),
            ("tds_secret", "GET", "/openapi/v1/subscriptions", b"{}", "1700000000"),
            ("tds_secret", "POST", "/openapi/v1/subscriptions/x", b"{}", "1700000000"),
            ("tds_secret", "POST", "/openapi/v1/subscriptions", b"{ }", "1700000000"),
            ("tds_secret", "POST", "/openapi/v1/subscriptions", b"{}", "1700000001"),
        ] {
            assert!(!verify_request(secret, method, uri, body, ts, &sig), "{method} {uri} {ts}");
        }
        assert!(!verify_request("tds_secret", "POST", "/openapi/v1/subscriptions", b"{}", "1700000000", "%%"));
    }
}
