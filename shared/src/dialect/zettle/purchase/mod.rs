//! Typed models of the Zettle Purchase API v2, and a normaliser for `PurchaseCreated` payloads.
//!
//! Zettle has two purchase shapes that differ only in how payments are listed. Version 1 has
//! three lists: `cardPayments`, `cashPayments` and a generic `payments`. Version 2 has only
//! `payments`, and each payment keeps its type-specific data in `attributes`. [`normalise`]
//! accepts either shape and always returns v2, so subscribers see a single shape.
//!
//! The types follow two rules:
//!
//! - **Nothing is dropped.** Zettle adds fields over time and asks integrations to tolerate them.
//!   Every struct keeps unknown keys in its `extra` map. Payment types that are not listed in
//!   [`PaymentType`] stay as [`PaymentType::Other`], and their attributes as
//!   [`PaymentAttributes::Other`].
//! - **Nothing is invented.** Optional fields are [`Nullable`], which tells an absent key apart
//!   from an explicit `null`. A v2 purchase that is parsed and serialized again is therefore equal
//!   to the input as a JSON value: no `"discounts": []` appears where the input had none, and
//!   `"installmentAmount": null` stays `null`.
//!
//! Amounts are `i64` minor units (öre, cents). Numbers that are not amounts or counts (VAT rates,
//! percentages, GPS coordinates) are kept as [`serde_json::Number`], because `25` and `25.0` are
//! different JSON values and an `f64` would turn the first into the second. Timestamps such as
//! `"2020-12-15T14:46:43.592+0000"` stay as text: their offset has no colon, so RFC 3339 parsers
//! reject them, and keeping the text makes the round trip exact.

mod common;
mod model;
mod normalise;
mod payment;
#[cfg(test)]
mod tests;

pub use common::{Extra, Nullable, References};
pub use model::*;
pub use normalise::*;
pub use payment::*;
