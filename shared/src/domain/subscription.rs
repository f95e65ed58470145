//! The one subscription model every dialect maps onto.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::OrganizationId;

/// Which API surface created the subscription; decides the delivery envelope and headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Dialect {
    Zettle,
    Metro,
    Lagerkoll,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        crate::dialect::spec(self).name
    }
}

impl FromStr for Dialect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::dialect::ALL.into_iter().find(|d| d.as_str() == s).ok_or_else(|| format!("unknown dialect {s:?}"))
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

/// The transport Zettle calls `transportName`; webhooks are the only one.
pub const TRANSPORT_WEBHOOK: &str = "WEBHOOK";

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
    /// 64 alphanumerics; the HMAC key of every delivery.
    pub signing_key: String,
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
        let now = super::to_micros(now);
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
            signing_key: crate::signing::generate_signing_key(),
            created_at: now,
            updated_at: now,
        }
    }

    /// Whether an event with this name is delivered to this subscription (explicit match or
    /// all-events subscription).
    pub fn wants(&self, event_name: &str) -> bool {
        self.event_names.is_empty() || self.event_names.iter().any(|e| e == event_name)
    }
}
