//! API keys: one organization each, a set of scopes, stored only as a SHA-256 hash.

use std::fmt;
use std::str::FromStr;

use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use super::OrganizationId;

/// An OAuth-style scope, spelled as Zettle spells them (`READ:PURCHASE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    #[serde(rename = "READ:PURCHASE")]
    ReadPurchase,
    #[serde(rename = "READ:PRODUCT")]
    ReadProduct,
    #[serde(rename = "WRITE:PRODUCT")]
    WriteProduct,
    #[serde(rename = "READ:USERINFO")]
    ReadUserinfo,
    #[serde(rename = "WRITE:USERINFO")]
    WriteUserinfo,
    #[serde(rename = "READ:FINANCE")]
    ReadFinance,
    #[serde(rename = "READ:PAYMENT")]
    ReadPayment,
    #[serde(rename = "WRITE:PAYMENT")]
    WritePayment,
    /// Metro Markets order events.
    #[serde(rename = "READ:ORDER")]
    ReadOrder,
}

impl Scope {
    pub(crate) const ALL: [Scope; 9] = [
        Scope::ReadPurchase,
        Scope::ReadProduct,
        Scope::WriteProduct,
        Scope::ReadUserinfo,
        Scope::WriteUserinfo,
        Scope::ReadFinance,
        Scope::ReadPayment,
        Scope::WritePayment,
        Scope::ReadOrder,
    ];

    /// Every scope.
    pub fn every() -> &'static [Scope] {
        &Scope::ALL
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ReadPurchase => "READ:PURCHASE",
            Scope::ReadProduct => "READ:PRODUCT",
            Scope::WriteProduct => "WRITE:PRODUCT",
            Scope::ReadUserinfo => "READ:USERINFO",
            Scope::WriteUserinfo => "WRITE:USERINFO",
            Scope::ReadFinance => "READ:FINANCE",
            Scope::ReadPayment => "READ:PAYMENT",
            Scope::WritePayment => "WRITE:PAYMENT",
            Scope::ReadOrder => "READ:ORDER",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL.into_iter().find(|scope| scope.as_str().eq_ignore_ascii_case(s)).ok_or_else(|| {
            let known: Vec<_> = Scope::ALL.iter().map(|s| s.as_str()).collect();
            format!("unknown scope {s:?}; known scopes: {}", known.join(", "))
        })
    }
}

/// A stored API key. The secret itself is never stored, only `hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Public identifier, used to list and revoke the key.
    pub id: Uuid,
    /// Lowercase hex SHA-256 of the secret.
    pub hash: String,
    pub organization: OrganizationId,
    pub scopes: Vec<Scope>,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    /// The client secret of Metro-style request signing (`X-Client-Id` = [`ApiKey::client_id`],
    /// `X-Timestamp`, `X-Signature`), for keys issued with one. Kept as issued: an HMAC can only
    /// be checked with its key. The API key itself is still stored only as its hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

impl ApiKey {
    /// The public client id of request signing: the key's SHA-256, which finds the key in one
    /// lookup on every store and reveals nothing of the key.
    pub fn client_id(&self) -> &str {
        &self.hash
    }

    pub fn is_usable_at(&self, now: OffsetDateTime) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| now < at)
    }
}

/// A freshly minted key: the record to store and the secret to show once.
pub struct NewApiKey {
    pub record: ApiKey,
    pub secret: String,
}

/// Prefix of every secret, so a leaked key is recognisable (secret scanners, logs).
const SECRET_PREFIX: &str = "tdk_";

impl NewApiKey {
    pub fn generate(
        organization: OrganizationId,
        mut scopes: Vec<Scope>,
        now: OffsetDateTime,
        expires_at: Option<OffsetDateTime>,
    ) -> Self {
        scopes.sort();
        scopes.dedup();
        // rand's thread RNG is a CSPRNG (ChaCha) seeded from the operating system.
        let secret = format!("{SECRET_PREFIX}{}", Alphanumeric.sample_string(&mut rand::rng(), 48));
        let record = ApiKey {
            id: Uuid::new_v4(),
            hash: hash_secret(&secret),
            organization,
            scopes,
            created_at: now,
            expires_at,
            revoked_at: None,
            client_secret: None,
        };
        NewApiKey { record, secret }
    }

    /// Also issues a client secret for signing requests the way Metro's API clients do.
    pub fn with_client_secret(mut self) -> Self {
        self.record.client_secret =
            Some(format!("{CLIENT_SECRET_PREFIX}{}", Alphanumeric.sample_string(&mut rand::rng(), 48)));
        self
    }
}

pub const CLIENT_SECRET_PREFIX: &str = "tds_";

pub fn hash_secret(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_hashed_and_not_kept() {
        let org = OrganizationId(Uuid::new_v4());
        let key =
            NewApiKey::generate(org, vec![Scope::ReadProduct, Scope::ReadProduct], OffsetDateTime::now_utc(), None);
        assert!(key.secret.starts_with(SECRET_PREFIX));
        assert_eq!(key.secret.len(), SECRET_PREFIX.len() + 48);
        assert_eq!(key.record.hash, hash_secret(&key.secret));
        assert_eq!(key.record.hash.len(), 64);
        assert_eq!(key.record.scopes, vec![Scope::ReadProduct]);
        let stored = serde_json::to_string(&key.record).unwrap();
        assert!(!stored.contains(&key.secret));
    }

    #[test]
    fn known_sha256_vector() {
        assert_eq!(hash_secret("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn expiry_and_revocation() {
        let now = OffsetDateTime::now_utc();
        let mut key =
            NewApiKey::generate(OrganizationId(Uuid::new_v4()), vec![], now, Some(now + time::Duration::hours(1)))
                .record;
        assert!(key.is_usable_at(now));
        assert!(!key.is_usable_at(now + time::Duration::hours(2)));
        key.revoked_at = Some(now);
        assert!(!key.is_usable_at(now));
    }

    #[test]
    fn scopes_parse_case_insensitively_and_reject_unknown() {
        assert_eq!("read:purchase".parse::<Scope>().unwrap(), Scope::ReadPurchase);
        assert!("READ:EVERYTHING".parse::<Scope>().unwrap_err().contains("known scopes"));
    }
}
