//! The portal's credentials: a link an operator hands out, opened once, becomes a session the
//! browser holds as an HttpOnly cookie. Both are sealed grants (an organization, the scopes it
//! may see and manage, an expiry and a nonce) signed with HMAC-SHA256 under a secret every
//! instance shares (made once, kept in the store). No API key ever reaches the browser.
//!
//! - A link is opened at most once (its nonce is used once in the store) and within
//!   [`LINK_OPEN_WINDOW`] of being made; the session it opens lasts the link's ttl.
//! - A session authenticates the organization routes the portal calls, with its scopes; calls
//!   that change something must also carry its CSRF token (`X-Tidings-CSRF`), which only a page
//!   of the portal can read (`GET /portal/session`). The cookie is `SameSite=Strict` too.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::Mac;
use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::{ApiKey, OrganizationId, Scope};
use crate::ports::Limits;
use crate::signing::{hex, hmac_parts, mac};
use crate::{App, Error, Result};

/// The cookie a session travels in.
pub const SESSION_COOKIE: &str = "tidings_portal";
/// The header state-changing calls of a session carry its CSRF token in.
pub const CSRF_HEADER: &str = "x-tidings-csrf";
/// How long after it is made a link may be opened.
pub const LINK_OPEN_WINDOW: time::Duration = time::Duration::minutes(15);
/// The session length when a link names none, and the shortest and longest it may name (a
/// second: to see expiry at work).
pub const DEFAULT_SESSION: time::Duration = time::Duration::hours(1);
pub const MIN_SESSION: time::Duration = time::Duration::seconds(1);
pub const MAX_SESSION: time::Duration = time::Duration::hours(24);

/// What a token grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    #[serde(rename = "o")]
    pub organization: OrganizationId,
    #[serde(rename = "s")]
    pub scopes: Vec<Scope>,
    /// Unix seconds after which the token is refused.
    #[serde(rename = "x")]
    pub expires_at: i64,
    #[serde(rename = "n")]
    pub nonce: Uuid,
    #[serde(rename = "k")]
    pub kind: Kind,
    /// A link's: how long the session it opens lasts, in seconds.
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub session_seconds: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    #[serde(rename = "link")]
    Link,
    #[serde(rename = "session")]
    Session,
}

impl Grant {
    /// A link for `organization` with `scopes`, opening a session of `session` length.
    pub fn link(
        organization: OrganizationId,
        scopes: Vec<Scope>,
        session: time::Duration,
        now: OffsetDateTime,
    ) -> Grant {
        Grant {
            organization,
            scopes,
            expires_at: (now + LINK_OPEN_WINDOW.min(session)).unix_timestamp(),
            nonce: Uuid::new_v4(),
            kind: Kind::Link,
            session_seconds: Some(session.whole_seconds()),
        }
    }

    /// The session a link opens.
    pub fn session_of(link: &Grant, now: OffsetDateTime) -> Grant {
        let seconds = link.session_seconds.unwrap_or(DEFAULT_SESSION.whole_seconds());
        Grant {
            organization: link.organization,
            scopes: link.scopes.clone(),
            expires_at: (now + time::Duration::seconds(seconds)).unix_timestamp(),
            nonce: Uuid::new_v4(),
            kind: Kind::Session,
            session_seconds: None,
        }
    }

    /// When it expires.
    pub fn expiry(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(self.expires_at).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// A session as the key its calls are made with: its scopes, its organization, never stored.
    pub fn as_key(&self) -> ApiKey {
        ApiKey {
            id: self.nonce,
            hash: String::new(),
            organization: self.organization,
            scopes: self.scopes.clone(),
            created_at: self.expiry(),
            expires_at: Some(self.expiry()),
            revoked_at: None,
            client_secret: None,
        }
    }
}

/// Why a token was refused (said to the person holding it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a token we made, or altered.
    Invalid,
    Expired,
    /// A link opened before.
    Used,
    /// A session its holder signed out of.
    SignedOut,
}

impl Refusal {
    pub fn explain(self) -> &'static str {
        match self {
            Refusal::Invalid => "This portal link is not valid. Ask for a new one.",
            Refusal::Expired => "This portal link or session has expired. Ask for a new link.",
            Refusal::Used => "This portal link was opened already; a link opens once. Ask for a new one.",
            Refusal::SignedOut => Refusal::SignedOut.explain_session(),
        }
    }

    /// The same said of a session's cookie: an altered and an expired one read differently.
    pub fn explain_session(self) -> &'static str {
        match self {
            Refusal::Invalid | Refusal::Used => {
                "Your portal session was altered, or this portal did not make it, so it is not accepted. \
                 Ask for a new link."
            }
            Refusal::Expired => "Your portal session expired. Ask for a new link.",
            Refusal::SignedOut => "Your portal session was signed out. Open a new portal link to come back.",
        }
    }
}

/// `<payload>.<signature>`, both base64url.
pub fn seal(secret: &str, grant: &Grant) -> String {
    let payload = B64.encode(serde_json::to_vec(grant).expect("a grant always serializes"));
    let signature = B64.encode(hmac_parts(secret.as_bytes(), &[b"tidings-portal-v1.", payload.as_bytes()]));
    format!("{payload}.{signature}")
}

/// The grant of a token of `kind`, if it is ours, unaltered and unexpired at `now`.
pub fn unseal(secret: &str, token: &str, kind: Kind, now: OffsetDateTime) -> std::result::Result<Grant, Refusal> {
    let (payload, signature) = token.split_once('.').ok_or(Refusal::Invalid)?;
    let signature = B64.decode(signature).map_err(|_| Refusal::Invalid)?;
    let mut check = mac(secret.as_bytes());
    check.update(b"tidings-portal-v1.");
    check.update(payload.as_bytes());
    check.verify_slice(&signature).map_err(|_| Refusal::Invalid)?;
    let grant: Grant =
        B64.decode(payload).ok().and_then(|json| serde_json::from_slice(&json).ok()).ok_or(Refusal::Invalid)?;
    if grant.kind != kind {
        return Err(Refusal::Invalid);
    }
    if now.unix_timestamp() >= grant.expires_at {
        return Err(Refusal::Expired);
    }
    Ok(grant)
}

/// The CSRF token of a session: only its pages can read it.
pub fn csrf_token(secret: &str, session: &Grant) -> String {
    hex(&hmac_parts(secret.as_bytes(), &[b"tidings-portal-csrf.", session.nonce.as_bytes()]))
}

/// Whether `given` is the session's CSRF token (constant time).
pub fn csrf_matches(secret: &str, session: &Grant, given: &str) -> bool {
    let expected = csrf_token(secret, session);
    expected.len() == given.len() && expected.bytes().zip(given.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// The portal's signing secret, read from the store once per process.
pub async fn secret(app: &App) -> Result<String> {
    app.portal_secret.get_or_try_init(|| stored_secret(&*app.store)).await.cloned()
}

/// The portal's signing secret as the store keeps it: made by whoever needs it first.
pub async fn stored_secret(store: &dyn Limits) -> Result<String> {
    let candidate = Alphanumeric.sample_string(&mut rand::rng(), 64);
    store.shared_secret("portal", &candidate).await
}

/// A new link for `organization`: its code (the `code` of `/portal/open?code=…`) and its grant.
pub fn new_link(
    secret: &str,
    organization: OrganizationId,
    scopes: Vec<Scope>,
    session: time::Duration,
    now: OffsetDateTime,
) -> (String, Grant) {
    let link = Grant::link(organization, scopes, session, now);
    (seal(secret, &link), link)
}

/// Opens a link: its session, once. A replayed, altered or expired link is refused.
pub async fn open_link(app: &App, code: &str) -> Result<std::result::Result<Grant, Refusal>> {
    let secret = secret(app).await?;
    let now = app.clock.now();
    let link = match unseal(&secret, code, Kind::Link, now) {
        Ok(link) => link,
        Err(refusal) => return Ok(Err(refusal)),
    };
    if !app.store.use_once(&format!("portal-link:{}", link.nonce), now, link.expiry()).await? {
        return Ok(Err(Refusal::Used));
    }
    Ok(Ok(Grant::session_of(&link, now)))
}

/// The session a request's cookie carries, if any: `Ok(None)` without the cookie. A session
/// signed out of is refused on every instance, whoever still holds a copy of its cookie.
pub async fn session_of(app: &App, headers: &http::HeaderMap) -> Result<Option<Grant>> {
    let Some(token) = cookie(headers, SESSION_COOKIE) else { return Ok(None) };
    let secret = secret(app).await?;
    let now = app.clock.now();
    let refusal = match unseal(&secret, token, Kind::Session, now) {
        Ok(session) if !app.store.was_used(&signed_out(&session), now).await? => return Ok(Some(session)),
        Ok(_) => Refusal::SignedOut,
        Err(refusal) => refusal,
    };
    Err(Error::Unauthenticated(refusal.explain_session().to_owned()))
}

/// Ends `session` everywhere: its cookie is refused from now until it would have expired.
pub async fn sign_out(app: &App, session: &Grant) -> Result<()> {
    app.store.use_once(&signed_out(session), app.clock.now(), session.expiry()).await?;
    Ok(())
}

/// The nonce that marks a session as signed out of.
fn signed_out(session: &Grant) -> String {
    format!("portal-session-ended:{}", session.nonce)
}

/// A cookie's value from the request's `Cookie` headers.
fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn link() -> Grant {
        Grant::link(OrganizationId(Uuid::nil()), vec![Scope::ReadProduct], time::Duration::hours(2), now())
    }

    #[test]
    fn a_sealed_grant_opens_only_unaltered_unexpired_and_as_its_kind() {
        let token = seal("secret", &link());
        assert_eq!(unseal("secret", &token, Kind::Link, now()), Ok(link_with_nonce(&token)));
        assert_eq!(unseal("other", &token, Kind::Link, now()), Err(Refusal::Invalid), "another secret");
        assert_eq!(unseal("secret", &token, Kind::Session, now()), Err(Refusal::Invalid), "a link is no session");
        let opens_until = now() + LINK_OPEN_WINDOW;
        assert_eq!(unseal("secret", &token, Kind::Link, opens_until), Err(Refusal::Expired));
        // Any change of the payload (more scopes, another organization, later expiry) breaks it.
        let (payload, signature) = token.split_once('.').unwrap();
        let mut grant: Grant = serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap();
        grant.scopes.push(Scope::ReadPurchase);
        let forged = format!("{}.{signature}", B64.encode(serde_json::to_vec(&grant).unwrap()));
        assert_eq!(unseal("secret", &forged, Kind::Link, now()), Err(Refusal::Invalid));
        for junk in ["", ".", "abc", "abc.def", &format!("{payload}.")] {
            assert_eq!(unseal("secret", junk, Kind::Link, now()), Err(Refusal::Invalid), "{junk:?}");
        }
    }

    fn link_with_nonce(token: &str) -> Grant {
        let payload = token.split_once('.').unwrap().0;
        serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap()
    }

    #[test]
    fn a_session_lasts_the_links_ttl_and_its_csrf_token_is_its_own() {
        let link = link();
        let session = Grant::session_of(&link, now());
        assert_eq!(session.expiry(), now() + time::Duration::hours(2));
        assert_eq!(
            (session.kind, session.organization, session.scopes.clone()),
            (Kind::Session, link.organization, link.scopes.clone())
        );
        assert_ne!(session.nonce, link.nonce);
        let csrf = csrf_token("secret", &session);
        assert!(csrf_matches("secret", &session, &csrf));
        assert!(!csrf_matches("secret", &Grant::session_of(&link, now()), &csrf), "another session's");
        assert!(!csrf_matches("secret", &session, ""));
        // A short ttl shortens the link's window too.
        let short = Grant::link(OrganizationId(Uuid::nil()), vec![], time::Duration::minutes(5), now());
        assert_eq!(short.expiry(), now() + time::Duration::minutes(5));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = http::HeaderMap::new();
        headers.append(http::header::COOKIE, "a=1; tidings_portal=tok.en; b=2".parse().unwrap());
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("tok.en"));
        assert_eq!(cookie(&headers, "c"), None);
    }
}
