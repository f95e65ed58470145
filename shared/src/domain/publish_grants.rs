//! Which organizations each publish source may publish for: the tenant boundary of publishing
//! without the API. A source is a queue the ingest function reads (the stack's `PublishQueue`, a
//! team's own queue, the EventBridge rule's queue), named by its ARN; its grant lists
//! organization UUIDs, or `*` for every organization Tidings knows. The template sets them from
//! its `…Organizations` parameters (`TIDINGS_PUBLISH_GRANTS`).

use std::collections::{HashMap, HashSet};

use super::OrganizationId;
use crate::{Error, Result};

/// Each source's grant, by queue ARN. A source not named may publish for no organization.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishGrants(HashMap<String, Grant>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Grant {
    /// Every organization Tidings knows (one with an API key or a subscription).
    Any,
    Only(HashSet<OrganizationId>),
}

impl PublishGrants {
    /// `<queue ARN>=<organization>,<organization>;<queue ARN>=*`, whitespace ignored. A source
    /// with an empty list is named, and may publish for no organization.
    pub fn parse(text: &str) -> std::result::Result<PublishGrants, String> {
        let mut grants = HashMap::new();
        for entry in text.split(';').map(str::trim).filter(|entry| !entry.is_empty()) {
            let (source, organizations) =
                entry.split_once('=').ok_or_else(|| format!("{entry:?} is not <queue ARN>=<organizations>"))?;
            let (source, organizations) = (source.trim(), organizations.trim());
            let grant = if organizations == "*" {
                Grant::Any
            } else {
                let parse = |org: &str| {
                    org.parse::<OrganizationId>()
                        .map_err(|_| format!("{org:?} in the grant of {source} is not an organization UUID (or *)"))
                };
                Grant::Only(
                    organizations
                        .split(',')
                        .map(str::trim)
                        .filter(|o| !o.is_empty())
                        .map(parse)
                        .collect::<std::result::Result<_, _>>()?,
                )
            };
            grants.insert(source.to_owned(), grant);
        }
        Ok(PublishGrants(grants))
    }

    /// Whether the source `source_arn` may publish for `org`; if not, why, in words an operator
    /// acts on.
    pub fn check(&self, source_arn: &str, org: OrganizationId) -> Result<()> {
        let granted = match self.0.get(source_arn) {
            Some(Grant::Any) => true,
            Some(Grant::Only(organizations)) => organizations.contains(&org),
            None => false,
        };
        if granted {
            return Ok(());
        }
        let queue = source_arn.rsplit(':').next().unwrap_or(source_arn);
        Err(Error::Forbidden(format!(
            "organizationUuid: organization {org} is not granted to the publish source {queue}: \
             only the organizations of its grant (the stack's …Organizations parameter) publish through it"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "5b6a3f52-3c4e-11ee-be56-0242ac120002";
    const B: &str = "0f1c8a6e-3c4e-11ee-be56-0242ac120002";
    const QUEUE: &str = "arn:aws:sqs:eu-west-1:123456789012:tidings-PublishQueue";
    const TEAM: &str = "arn:aws:sqs:eu-west-1:123456789012:team";
    const BUS: &str = "arn:aws:sqs:eu-west-1:123456789012:tidings-PublishEventQueue";

    #[test]
    fn each_source_publishes_for_its_grant_only() {
        let grants = PublishGrants::parse(&format!("{QUEUE}=*; {TEAM} = {A} , ;{BUS}=")).unwrap();
        let (a, b) = (A.parse().unwrap(), B.parse().unwrap());
        assert!(grants.check(QUEUE, a).is_ok() && grants.check(QUEUE, b).is_ok());
        assert!(grants.check(TEAM, a).is_ok());
        let refused = grants.check(TEAM, b).unwrap_err().to_string();
        assert!(refused.contains(B) && refused.contains("team") && refused.contains("grant"), "{refused}");
        assert!(grants.check(BUS, a).is_err(), "an empty grant publishes for no one");
        assert!(grants.check("arn:aws:sqs:eu-west-1:123456789012:other", a).is_err(), "an unnamed source neither");
        assert!(PublishGrants::parse("").unwrap().check(QUEUE, a).is_err());
    }

    #[test]
    fn a_grant_that_does_not_parse_says_which_part() {
        assert!(PublishGrants::parse(QUEUE).unwrap_err().contains("is not <queue ARN>=<organizations>"));
        let err = PublishGrants::parse(&format!("{TEAM}={A},acme")).unwrap_err();
        assert!(err.contains("\"acme\"") && err.contains("team"), "{err}");
    }
}
