//! Zettle's error body: `{errorType, developerMessage, violations: [{propertyName,
//! developerMessage}]}` with the seed's status codes (also every `/organizations/...` route's).

use http::{header, HeaderMap, HeaderValue};

use super::error_body::error_body;
use crate::api::request::add_error_headers;
use crate::api::request::json_response;
use crate::api::route::Response;
use crate::Error;

/// The Zettle error response: [`error_body`] with its status and the error's headers.
pub(crate) fn error_response(err: &Error, _request_headers: &HeaderMap) -> Response {
    let (status, body) = error_body(err);
    let mut response = json_response(status, &body);
    add_error_headers(&mut response, err);
    if let Error::Unauthenticated(_) = err {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}
