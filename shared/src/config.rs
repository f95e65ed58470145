//! Configuration from environment variables, with a message naming the variable on a bad or
//! missing value. Used by the Lambda binaries.

use std::path::PathBuf;

use crate::destination::DestinationPolicy;
use crate::{App, Error, Result};

/// A variable that must be set.
pub fn required(name: &str) -> Result<String> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Ok(value),
        Ok(_) => Err(Error::internal(format!("environment variable {name} is empty"))),
        Err(_) => Err(Error::internal(format!("environment variable {name} is not set"))),
    }
}

/// A variable with a default.
pub fn optional(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `TIDINGS_DESTINATIONS`: `strict` (default: public HTTPS only) or `local` (http and
/// loopback allowed, for local testing).
pub fn destination_policy() -> Result<DestinationPolicy> {
    match optional("TIDINGS_DESTINATIONS").as_deref() {
        None | Some("strict") => Ok(DestinationPolicy::STRICT),
        Some("local") => Ok(DestinationPolicy::LOCAL),
        Some(other) => {
            Err(Error::internal(format!("TIDINGS_DESTINATIONS must be \"strict\" or \"local\", not {other:?}")))
        }
    }
}

/// The application a Lambda binary runs, from its environment.
///
/// `TIDINGS_BACKEND` selects the adapters. `embedded` (the only backend so far) keeps
/// everything in the SQLite file under `TIDINGS_DATA_DIR`, which is what `cargo lambda watch`
/// uses locally.
pub fn app_from_env() -> Result<App> {
    let policy = destination_policy()?;
    match required("TIDINGS_BACKEND")?.as_str() {
        "embedded" => App::embedded_default(&PathBuf::from(required("TIDINGS_DATA_DIR")?), policy),
        other => Err(Error::internal(format!("TIDINGS_BACKEND must be \"embedded\", not {other:?}"))),
    }
}
