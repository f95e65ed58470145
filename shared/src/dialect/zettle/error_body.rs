//! Zettle's error body, `{errorType, developerMessage, violations: [{propertyName,
//! developerMessage}]}`, and its status: apart from the HTTP half (`error_response.rs`), so the batch
//! publish route can nest it in its answers.

use http::StatusCode;
use serde_json::{json, Value};

use crate::Error;

/// The status and body Zettle answers `err` with.
pub(crate) fn error_body(err: &Error) -> (StatusCode, Value) {
    let (status, error_type) = match err {
        Error::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
        Error::Forbidden(_) => (StatusCode::FORBIDDEN, "FORBIDDEN"),
        // The error types Zettle's own service answers with, which clients recover by.
        Error::NotFound(_) => (StatusCode::NOT_FOUND, "SUBSCRIPTION_NOT_FOUND"),
        Error::MessageNotFound(_) => (StatusCode::NOT_FOUND, "MESSAGE_NOT_FOUND"),
        Error::MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED"),
        Error::BadRequest { .. } | Error::InvalidParams(_) => (StatusCode::BAD_REQUEST, "BAD_REQUEST"),
        Error::Unprocessable { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR"),
        Error::Duplicate(_) => (StatusCode::BAD_REQUEST, "SUBSCRIPTION_ALREADY_EXIST"),
        Error::DestinationUnreachable(_) => (StatusCode::BAD_REQUEST, "DESTINATION_NOT_ACCESSIBLE"),
        Error::DestinationRejected { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "DESTINATION_UNSUCCESSFUL_RESPONSE"),
        Error::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"),
        Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE"),
        Error::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, "REQUEST_TIMEOUT"),
        Error::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_REQUESTS"),
        Error::Internal(_) | Error::Refused(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR"),
    };
    let developer_message = match err {
        Error::Internal(detail) | Error::Refused(detail) => {
            tracing::error!(error = %detail, "internal error");
            "Tidings encountered an internal error; try again later".to_owned()
        }
        other => other.to_string(),
    };
    let mut body = json!({ "errorType": error_type, "developerMessage": developer_message });
    if let Some(field) = err.field() {
        body["violations"] = json!([{ "propertyName": field, "developerMessage": developer_message }]);
    }
    (status, body)
}
