//! Metro's problem bodies (`application/problem+json`); validation errors are 412 and list
//! every invalid field in `invalidParams`.

use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde_json::{json, Value};

use crate::api::request::add_error_headers;
use crate::api::request::json_response;
use crate::api::route::Response;
use crate::Error;

/// What a failed `test_connection` is reported as.
const NOT_VALID_RESPONSE: &str = "Server response is not valid";

/// The seed's problem bodies.
pub(crate) fn error_response(err: &Error, _request_headers: &HeaderMap) -> Response {
    let (status, body) = match err {
        // The seed's message first, then what exactly was wrong (missing, unknown, revoked, expired).
        Error::Unauthenticated(message) => (
            StatusCode::UNAUTHORIZED,
            json!({"type": "authorization", "title": "Authorization error", "status": 401,
                   "detail": {"errors": ["Authentication openAPI key was not found", message]}}),
        ),
        Error::NotFound(_) | Error::MessageNotFound(_) => (
            StatusCode::NOT_FOUND,
            json!({"type": "about:blank", "title": "Subscription not found", "status": 404, "detail": ""}),
        ),
        Error::InvalidParams(params) => (StatusCode::PRECONDITION_FAILED, validation(params, "")),
        Error::BadRequest { field: Some(field), message } | Error::Unprocessable { field: Some(field), message } => {
            (StatusCode::PRECONDITION_FAILED, validation(&[(field.clone(), message.clone())], ""))
        }
        Error::DestinationRejected { .. } | Error::DestinationUnreachable(_) => (
            StatusCode::PRECONDITION_FAILED,
            validation(&[("url".to_owned(), NOT_VALID_RESPONSE.to_owned())], "Validation error"),
        ),
        other => {
            let status = match other {
                Error::Forbidden(_) => StatusCode::FORBIDDEN,
                Error::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
                Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                Error::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
                Error::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
                Error::Duplicate(_) => StatusCode::CONFLICT,
                Error::Internal(detail) | Error::Refused(detail) => {
                    tracing::error!(error = %detail, "internal error");
                    StatusCode::INTERNAL_SERVER_ERROR
                }
                _ => StatusCode::BAD_REQUEST,
            };
            let detail = match other {
                Error::Internal(_) | Error::Refused(_) => "Internal error; try again later".to_owned(),
                other => other.to_string(),
            };
            let title = status.canonical_reason().unwrap_or("Error");
            (status, json!({"type": "about:blank", "title": title, "status": status.as_u16(), "detail": detail}))
        }
    };
    let mut response = json_response(status, &body);
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    add_error_headers(&mut response, err);
    response
}

fn validation(params: &[(String, String)], detail: &str) -> Value {
    let invalid: Vec<Value> = params.iter().map(|(name, reason)| json!({"name": name, "reason": reason})).collect();
    json!({"type": "about:blank", "title": "Validation error", "status": 412, "detail": detail, "instance": null, "invalidParams": invalid})
}
