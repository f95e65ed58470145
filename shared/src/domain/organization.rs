use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The tenant. Zettle's `{organizationUuid}`, a Metro seller account and a Lagerkoll store all
/// name one organization; every stored record belongs to exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrganizationId(pub Uuid);

impl fmt::Display for OrganizationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for OrganizationId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(OrganizationId).map_err(|_| format!("{s:?} is not an organization UUID"))
    }
}

/// A named set of organizations (Lagerkoll store groups).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreGroup {
    pub name: String,
    /// Sorted.
    pub members: Vec<OrganizationId>,
}
