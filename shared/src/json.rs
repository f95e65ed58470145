//! JSON bodies as every route and publish source reads them: one object, nested at most
//! [`MAX_JSON_DEPTH`] deep, unknown fields refused by name. Errors name what was read ("the
//! request body", "a publish record") in the dialect-neutral [`Error`].

use serde_json::{Map, Value};

use crate::{Error, Result};

/// Parses a body that must be one JSON object.
pub(crate) fn parse_object(body: &[u8]) -> Result<Map<String, Value>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::bad_request(None, "the request body must be a JSON object"));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::bad_request(None, "the request body must be a JSON object")),
        Err(e) => Err(Error::bad_request(None, format!("the request body is not valid JSON: {e}"))),
    }
}

/// How deeply JSON bodies may nest (objects and arrays, the outermost included): serde_json's
/// limit for parsed values, applied to raw payloads too.
pub const MAX_JSON_DEPTH: usize = 127;

/// Refuses JSON text nested deeper than [`MAX_JSON_DEPTH`], without parsing it.
pub(crate) fn check_depth(body: &[u8], what: &str) -> Result<()> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in body {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(Error::bad_request(
                        None,
                        format!("{what} is not valid JSON: it nests deeper than {MAX_JSON_DEPTH} levels"),
                    ));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Parses `what` (a request body, a publish record), which must be one JSON object, keeping each
/// field's exact bytes: for bodies that carry a payload to pass on untouched, parsed once.
pub(crate) fn parse_raw_object<'a>(
    body: &'a [u8],
    what: &str,
) -> Result<std::collections::BTreeMap<String, &'a serde_json::value::RawValue>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::bad_request(None, format!("{what} must be a JSON object")));
    }
    // Raw values are skipped, not parsed, so serde_json's depth limit does not reach them.
    check_depth(body, what)?;
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => Error::bad_request(None, format!("{what} must be a JSON object")),
        _ => Error::bad_request(None, format!("{what} is not valid JSON: {e}")),
    })
}

/// Refuses fields the dialect does not define, naming the first one.
pub(crate) fn reject_unknown_fields<'a>(keys: impl IntoIterator<Item = &'a String>, allowed: &[&str]) -> Result<()> {
    match keys.into_iter().find(|k| !allowed.contains(&k.as_str())) {
        Some(unknown) => Err(Error::BadRequest {
            field: Some(unknown.clone()),
            message: format!("unknown field {unknown:?}; allowed fields: {}", allowed.join(", ")),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn raw_bodies_nest_as_deep_as_parsed_ones() {
        for depth in [MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1] {
            let body = format!(r#"{{"payload": {}}}"#, nested(depth - 1));
            let parsed = serde_json::from_str::<Value>(&body).is_ok();
            assert_eq!(parse_raw_object(body.as_bytes(), "the request body").is_ok(), parsed, "depth {depth}");
        }
        // Brackets inside strings, escaped quotes included, are text.
        let body = format!(r#"{{"payload": "\"{}"}}"#, nested(500));
        assert!(parse_raw_object(body.as_bytes(), "the request body").is_ok());
    }
}
