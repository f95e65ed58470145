//! The one subscription model every dialect maps onto.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::delivery_options::DeliveryOptions;
use super::timestamp::to_micros;
use super::OrganizationId;

/// Which API surface created the subscription; decides the delivery envelope and headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Dialect {
    Zettle,
    Metro,
    Lagerkoll,
}

impl Dialect {
    /// Every dialect.
    pub(crate) const ALL: [Dialect; 3] = [Dialect::Zettle, Dialect::Metro, Dialect::Lagerkoll];

    /// Its name in storage and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Zettle => "zettle",
            Dialect::Metro => "metro",
            Dialect::Lagerkoll => "lagerkoll",
        }
    }
}

impl FromStr for Dialect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Dialect::ALL.into_iter().find(|d| d.as_str() == s).ok_or_else(|| format!("unknown dialect {s:?}"))
    }
}

/// Health of a subscription as shown to its owner (`status` in the Zettle response).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SubscriptionStatus {
    /// Receiving deliveries.
    Active,
    /// Deliveries are being exhausted; still attempted.
    Failing,
    /// No more attempts until the owner updates or re-enables it.
    Disabled,
    /// Switched off by its owner (Metro `isActive: false`, or DELETE there).
    Inactive,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Active => "ACTIVE",
            SubscriptionStatus::Failing => "FAILING",
            SubscriptionStatus::Disabled => "DISABLED",
            SubscriptionStatus::Inactive => "INACTIVE",
        }
    }
}

impl SubscriptionStatus {
    /// Whether new messages are queued for it.
    pub fn receives(self) -> bool {
        matches!(self, SubscriptionStatus::Active | SubscriptionStatus::Failing)
    }
}

impl fmt::Display for SubscriptionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SubscriptionStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ACTIVE" => Ok(SubscriptionStatus::Active),
            "FAILING" => Ok(SubscriptionStatus::Failing),
            "DISABLED" => Ok(SubscriptionStatus::Disabled),
            "INACTIVE" => Ok(SubscriptionStatus::Inactive),
            other => Err(format!("unknown subscription status {other:?}")),
        }
    }
}

/// Rotated-out keys kept signing at once, beside the current one (Svix allows five keys in all).
const MAX_PREVIOUS_SIGNING_KEYS: usize = 4;

/// A signing key rotated out, and when it stops signing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreviousSigningKey {
    pub key: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// The transport Zettle calls `transportName`; webhooks are the only one.
pub(crate) const TRANSPORT_WEBHOOK: &str = "WEBHOOK";

/// Longest accepted contact email, in every dialect.
pub(crate) const MAX_CONTACT_EMAIL_LEN: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub organization: OrganizationId,
    pub id: Uuid,
    pub dialect: Dialect,
    pub transport: String,
    /// Explicit events; empty means every event of the catalog.
    pub event_names: Vec<String>,
    pub destination: String,
    /// Who is told when deliveries keep failing; Lagerkoll webhooks name no one.
    pub contact_email: Option<String>,
    pub status: SubscriptionStatus,
    /// Since when every delivery attempt has failed (cleared by a success or an update).
    pub failing_since: Option<OffsetDateTime>,
    /// Since when its first attempts have not been answered within the first lane's time (on
    /// AWS, see `DeliverySettings::first_lane_timeout`): its jobs take the slow lane until one is
    /// answered within that time again, or an update.
    #[serde(default)]
    pub slow_since: Option<OffsetDateTime>,
    /// 64 alphanumerics; the HMAC key of every delivery.
    pub signing_key: String,
    /// Keys rotated out that still sign until they expire, newest first (at most
    /// [`MAX_PREVIOUS_SIGNING_KEYS`]). An expired one signs nothing, stored or not.
    pub previous_signing_keys: Vec<PreviousSigningKey>,
    /// Its rate limit and ordering (set through the operators' API, never by a dialect's body).
    pub delivery: DeliveryOptions,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl Subscription {
    /// A new, active webhook subscription with a fresh signing key and no contact, created `now`
    /// (kept to the microsecond, as stored).
    pub fn new(
        organization: OrganizationId,
        id: Uuid,
        dialect: Dialect,
        event_names: Vec<String>,
        destination: &str,
        now: OffsetDateTime,
    ) -> Subscription {
        let now = to_micros(now);
        Subscription {
            organization,
            id,
            dialect,
            transport: TRANSPORT_WEBHOOK.to_owned(),
            event_names,
            // Kept as the client wrote it (less surrounding blanks), so it reads back unchanged.
            destination: destination.trim().to_owned(),
            contact_email: None,
            status: SubscriptionStatus::Active,
            failing_since: None,
            slow_since: None,
            signing_key: crate::signing::generate_signing_key(),
            previous_signing_keys: Vec::new(),
            delivery: DeliveryOptions::default(),
            created_at: now,
            updated_at: now,
        }
    }

    /// The keys that sign a delivery made at `at`: the current one first, then the rotated-out
    /// ones still in their overlap, newest first (Standard Webhooks carries one signature each).
    pub(crate) fn signing_keys_at(&self, at: OffsetDateTime) -> Vec<&str> {
        std::iter::once(self.signing_key.as_str())
            .chain(self.previous_signing_keys.iter().filter(|k| k.expires_at > at).map(|k| k.key.as_str()))
            .collect()
    }

    /// The key of the dialect's single-valued signature header (`X-iZettle-Signature`, Metro's
    /// `x-signature`) at `at`: the oldest key still in its overlap, else the current one. A
    /// receiver that has not switched keeps verifying until that key expires, at the time the
    /// rotation announced; one that verifies with either key never misses a delivery.
    pub(crate) fn single_signature_key_at(&self, at: OffsetDateTime) -> &str {
        self.previous_signing_keys
            .iter()
            .rev()
            .find(|k| k.expires_at > at)
            .map_or(self.signing_key.as_str(), |k| k.key.as_str())
    }

    /// Replaces the signing key with `new_key`; the current one keeps signing for `overlap`
    /// (none: it stops now, and so do all earlier ones). Keys already expired are dropped, and
    /// at most [`MAX_PREVIOUS_SIGNING_KEYS`] are kept, the oldest going first.
    pub fn rotate_signing_key(&mut self, new_key: String, now: OffsetDateTime, overlap: time::Duration) {
        let replaced = std::mem::replace(&mut self.signing_key, new_key);
        if overlap <= time::Duration::ZERO {
            self.previous_signing_keys.clear();
            return;
        }
        self.previous_signing_keys.retain(|k| k.expires_at > now);
        self.previous_signing_keys.insert(0, PreviousSigningKey { key: replaced, expires_at: now + overlap });
        self.previous_signing_keys.truncate(MAX_PREVIOUS_SIGNING_KEYS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + seconds).unwrap()
    }

    #[test]
    fn rotated_keys_sign_until_their_overlap_ends_and_no_more_than_five_at_once() {
        let mut s =
            Subscription::new(OrganizationId(Uuid::nil()), Uuid::nil(), Dialect::Zettle, vec![], "https://x", at(0));
        let first = s.signing_key.clone();
        s.rotate_signing_key("second".into(), at(0), time::Duration::hours(1));
        assert_eq!(s.signing_keys_at(at(10)), vec!["second", first.as_str()]);
        assert_eq!(s.single_signature_key_at(at(10)), first);
        assert_eq!(s.signing_keys_at(at(3600)), vec!["second"], "expired at the end of the overlap");
        assert_eq!(s.single_signature_key_at(at(3600)), "second");
        for n in 3..10 {
            s.rotate_signing_key(format!("key-{n}"), at(n), time::Duration::hours(1));
        }
        assert_eq!(s.signing_keys_at(at(20)).len(), 1 + MAX_PREVIOUS_SIGNING_KEYS);
        assert_eq!(s.single_signature_key_at(at(20)), "key-5", "the oldest key still kept");
        s.rotate_signing_key("now-only".into(), at(30), time::Duration::ZERO);
        assert_eq!(s.signing_keys_at(at(30)), vec!["now-only"], "an overlap of 0 revokes every old key");
    }
}
