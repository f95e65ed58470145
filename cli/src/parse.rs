//! Flag values: organizations, scopes, uuids, times and retry schedules.

use tidings::domain::RetrySchedule;
use tidings::domain::{OrganizationId, Scope};
use time::OffsetDateTime;
use uuid::Uuid;

pub(crate) fn parse_schedule(s: &str) -> Result<RetrySchedule, String> {
    s.parse()
}

pub(crate) fn parse_org(s: &str) -> Result<OrganizationId, String> {
    s.parse()
}

pub(crate) fn parse_scope(s: &str) -> Result<Scope, String> {
    s.parse()
}

pub(crate) fn parse_uuid(s: &str) -> Result<Uuid, String> {
    Uuid::parse_str(s).map_err(|_| format!("{s:?} is not a UUID"))
}

pub(crate) fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{s:?} is not an RFC 3339 time ({e})"))
}
