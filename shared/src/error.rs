//! The one error type of the core. Each dialect maps it to its own status codes and error body
//! in one place (`dialect::<dialect>::errors`).

use std::fmt;

/// Which part of a request an error is about, so dialects can name it (`propertyName`,
/// `invalidParams[].name`, `errorField`).
type Field = Option<String>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No credentials, or credentials that are unknown, revoked or expired.
    #[error("{0}")]
    Unauthenticated(String),
    /// Valid credentials that lack a scope the request needs.
    #[error("{0}")]
    Forbidden(String),
    /// The resource does not exist for this organization.
    #[error("{0}")]
    NotFound(String),
    /// A published message is not (or no longer) kept.
    #[error("{0}")]
    MessageNotFound(String),
    /// The path exists but not for this method.
    #[error("method not allowed; allowed: {allow}")]
    MethodNotAllowed { allow: String },
    /// The request is malformed: bad JSON, a wrong type, an unknown field, a missing identifier.
    #[error("{message}")]
    BadRequest { field: Field, message: String },
    /// The request is well-formed but a value is unacceptable.
    #[error("{message}")]
    Unprocessable { field: Field, message: String },
    /// Several fields are invalid at once: (field, reason) pairs, for dialects that report them
    /// together (Metro's `invalidParams`).
    #[error("invalid fields: {}", .0.iter().map(|(f, r)| format!("{f}: {r}")).collect::<Vec<_>>().join("; "))]
    InvalidParams(Vec<(String, String)>),
    /// A resource with this identifier already exists.
    #[error("{0}")]
    Duplicate(String),
    /// The destination could not be reached (DNS, connection, TLS, timeout, refused address).
    #[error("destination is not accessible: {0}")]
    DestinationUnreachable(String),
    /// The destination answered, but not with a success status.
    #[error("destination responded with HTTP {status}")]
    DestinationRejected { status: u16 },
    /// The request body exceeds the size limit.
    #[error("request body exceeds {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// The client took too long to send its request. 408.
    #[error("{0}")]
    Timeout(String),
    /// Tidings cannot take the request now, through no fault of the request (the data disk is
    /// full); the same request succeeds once the condition passes. 503.
    #[error("{0}")]
    Unavailable(String),
    /// Over a rate limit; the same request succeeds after `retry_after_secs`. 429.
    #[error("{message}")]
    TooManyRequests { message: String, retry_after_secs: u64 },
    /// Anything that is our fault: storage, serialization, a bug.
    #[error("internal error: {0}")]
    Internal(String),
    /// An AWS service refused the request as invalid (DynamoDB's `ValidationException`, SQS's
    /// `InvalidParameterValue` and their kind): the same request fails again, so it is never
    /// retried as a passing failure. Our fault, as `Internal` is. 500.
    #[error("refused by AWS: {0}")]
    Refused(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn bad_request(field: impl Into<Option<&'static str>>, message: impl fmt::Display) -> Self {
        Error::BadRequest { field: field.into().map(str::to_owned), message: message.to_string() }
    }

    pub fn unprocessable(field: impl Into<Option<&'static str>>, message: impl fmt::Display) -> Self {
        Error::Unprocessable { field: field.into().map(str::to_owned), message: message.to_string() }
    }

    pub fn internal(err: impl fmt::Display) -> Self {
        Error::Internal(err.to_string())
    }

    /// Whether the same request may succeed later unchanged (storage or a dependency was down,
    /// a limit was reached), as opposed to a request that will never succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Internal(_) | Error::Unavailable(_) | Error::TooManyRequests { .. } | Error::Timeout(_))
    }

    /// The field the error is about, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::BadRequest { field, .. } | Error::Unprocessable { field, .. } => field.as_deref(),
            Error::InvalidParams(params) => params.first().map(|(f, _)| f.as_str()),
            _ => None,
        }
    }
}

/// What a client is told while the data disk is full.
const DISK_FULL: &str = "Tidings' data disk is full: nothing was stored; retry once space is freed";

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Self {
        match err.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => {
                tracing::error!(error = %err, "the data disk is full");
                Error::Unavailable(DISK_FULL.into())
            }
            _ => Error::Internal(format!("sqlite: {err}")),
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Self {
        Error::Internal(format!("json: {err}"))
    }
}
