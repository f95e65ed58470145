//! Timestamps as Tidings stores and shows them.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// RFC 3339 in UTC with a `Z`, the form of every timestamp Tidings shows
/// (`2021-03-29T16:31:47.087507Z`).
pub fn utc_timestamp(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC).format(&Rfc3339).expect("every UTC time formats as RFC 3339")
}

/// Truncates to whole microseconds, the precision Tidings stores and shows.
pub fn to_micros(t: OffsetDateTime) -> OffsetDateTime {
    let micros = t.nanosecond() / 1_000 * 1_000;
    t.replace_nanosecond(micros).expect("a truncated nanosecond is in range")
}
