//! How long Tidings keeps what it stores, and how long a message id is remembered: one place
//! for the windows the adapters (DynamoDB TTL, the local purge), publishing and delivery share.

/// How long published messages are kept for replay.
pub(crate) const MESSAGE_RETENTION: time::Duration = time::Duration::days(7);

/// How long a publish may take between queueing its jobs and claiming its id (the API's
/// longest request); a job without a claim is waited for this long after it was published (and
/// an ordered line's seat taken without its job sent is given up after it).
pub const CLAIM_GRACE: time::Duration = time::Duration::seconds(30);

/// A repeated message id within this window is accepted once and answered the same.
pub const IDEMPOTENCY_WINDOW: time::Duration = time::Duration::hours(24);

/// How long delivery attempts are kept (the table's TTL on AWS, the worker's purge locally).
pub(crate) const ATTEMPT_RETENTION: time::Duration = time::Duration::days(30);

/// How long dead letters are kept (the dead-letter queue's retention on AWS, which the template
/// check ties to this): their message is kept as long, so a replay delivers it.
pub(crate) const DEAD_LETTER_RETENTION: time::Duration = time::Duration::days(14);
