//! Lagerkoll's errors: numeric codes in `{errorCode, errorMessage, errorField, errorData}`, in
//! JSON or XML as the request asked; and the content negotiation every Lagerkoll response uses.

use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde::Serialize;

use crate::api::request::add_error_headers;
use crate::api::route::Response;
use crate::{Error, Result};

/// Lagerkoll's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Code {
    Credentials = 900001,
    Common = 900101,
    TooManyRequests = 900429,
    GettingWebhook = 902101,
}

/// A Lagerkoll error: HTTP status, code, message, field.
struct Failure {
    status: StatusCode,
    code: Code,
    message: String,
    field: Option<String>,
}

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        let field = err.field().map(str::to_owned);
        let (status, code) = match &err {
            Error::Unauthenticated(_) | Error::Forbidden(_) => (StatusCode::UNAUTHORIZED, Code::Credentials),
            Error::NotFound(_) | Error::MessageNotFound(_) => (StatusCode::NOT_FOUND, Code::GettingWebhook),
            Error::Internal(detail) | Error::Refused(detail) => {
                tracing::error!(error = %detail, "internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, Code::Common)
            }
            Error::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, Code::Common),
            Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, Code::Common),
            Error::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, Code::Common),
            Error::MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, Code::Common),
            Error::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, Code::TooManyRequests),
            _ => (StatusCode::BAD_REQUEST, Code::Common),
        };
        let message = match &err {
            Error::Internal(_) | Error::Refused(_) => "Something went wrong on the server".to_owned(),
            other => other.to_string(),
        };
        Failure { status, code, message, field }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody {
    error_code: u32,
    error_message: String,
    error_field: Option<String>,
    error_data: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Json,
    Xml,
}

pub(super) fn is_xml(value: Option<&HeaderValue>) -> bool {
    value.and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("xml"))
}

/// The response format: what `Accept` names; when it names neither (absent, or a wildcard such
/// as curl's `*/*`), the request's own format; JSON otherwise.
pub(super) fn response_format(headers: &HeaderMap) -> Format {
    match headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) {
        Some(accept) if accept.contains("xml") && !accept.contains("json") => Format::Xml,
        Some(accept) if accept.contains("json") => Format::Json,
        _ if is_xml(headers.get(header::CONTENT_TYPE)) => Format::Xml,
        _ => Format::Json,
    }
}

pub(super) fn respond<T: Serialize>(
    format: Format,
    status: StatusCode,
    json: &T,
    xml: impl FnOnce() -> Result<String>,
) -> Response {
    let (bytes, content_type) = match format {
        Format::Json => (serde_json::to_vec(json).expect("responses serialize"), "application/json"),
        Format::Xml => match xml() {
            Ok(text) => (text.into_bytes(), "application/xml"),
            Err(err) => return failure_response(Format::Json, Failure::from(err)),
        },
    };
    let mut response = http::Response::new(bytes::Bytes::from(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn failure_response(format: Format, failure: Failure) -> Response {
    let body = ErrorBody {
        error_code: failure.code as u32,
        error_message: failure.message,
        error_field: failure.field,
        error_data: None,
    };
    let xml = || quick_xml::se::to_string_with_root("error", &body).map_err(Error::internal);
    respond(format, failure.status, &body, xml)
}

/// Maps a core error to Lagerkoll's error body, in the format the request asked for.
pub(crate) fn error_response(err: &Error, request_headers: &HeaderMap) -> Response {
    let mut response = failure_response(response_format(request_headers), Failure::from(err.clone()));
    add_error_headers(&mut response, err);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn a_wildcard_accept_answers_in_the_requests_format() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            pairs.iter().map(|(n, v)| (header::HeaderName::from_static(n), HeaderValue::from_static(v))).collect()
        };
        let xml_body = ("content-type", "application/xml");
        assert!(response_format(&headers(&[xml_body, ("accept", "*/*")])) == Format::Xml);
        assert!(response_format(&headers(&[xml_body])) == Format::Xml);
        assert!(response_format(&headers(&[xml_body, ("accept", "application/json")])) == Format::Json);
        assert!(response_format(&headers(&[("accept", "*/*")])) == Format::Json);
        assert!(response_format(&headers(&[("accept", "application/xml")])) == Format::Xml);
    }

    #[test]
    fn an_internal_error_is_the_seeds_common_error_body() {
        let response = error_response(&Error::Internal("disk on fire".into()), &HeaderMap::new());
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body: Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"errorCode": 900101, "errorMessage": "Something went wrong on the server", "errorField": null, "errorData": null})
        );
    }
}
