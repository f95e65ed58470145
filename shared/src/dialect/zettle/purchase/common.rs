//! What every purchase model shares: unknown keys kept, optional fields that tell absent from
//! `null`, decimal text, cross-references.

use serde::de::{Error as _, Unexpected};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// Unknown keys of a JSON object, kept so that re-serializing loses nothing.
pub type Extra = Map<String, Value>;

// ---------------------------------------------------------------------------------------------
// Nullable
// ---------------------------------------------------------------------------------------------

/// An optional JSON field that remembers whether the key was absent or held an explicit `null`.
///
/// `Option<T>` treats both cases as `None`. When it is serialized with `skip_serializing_if`, an
/// input `"installmentAmount": null` comes back with no key at all. Without `skip_serializing_if`,
/// every absent key comes back as `null`. Either way the output differs from the input.
/// Declare fields of this type with `#[serde(default, skip_serializing_if = "Nullable::is_absent")]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Nullable<T> {
    /// The key was not in the object.
    #[default]
    Absent,
    /// The key was present with the value `null`.
    Null,
    /// The key was present with a value.
    Present(T),
}

impl<T> Nullable<T> {
    /// The value, if there is one.
    pub fn get(&self) -> Option<&T> {
        match self {
            Nullable::Present(value) => Some(value),
            Nullable::Absent | Nullable::Null => None,
        }
    }

    /// The value, if there is one; absent and `null` both become `None`.
    pub fn into_option(self) -> Option<T> {
        match self {
            Nullable::Present(value) => Some(value),
            Nullable::Absent | Nullable::Null => None,
        }
    }

    pub fn is_absent(&self) -> bool {
        matches!(self, Nullable::Absent)
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Nullable::Null)
    }
}

impl<T> From<T> for Nullable<T> {
    fn from(value: T) -> Self {
        Nullable::Present(value)
    }
}

impl<T: Serialize> Serialize for Nullable<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Nullable::Present(value) => serializer.serialize_some(value),
            // `skip_serializing_if` leaves out an absent field of a struct. Where no key can be
            // left out (in a list, at the top level), `null` is the closest representation.
            Nullable::Absent | Nullable::Null => serializer.serialize_none(),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Nullable<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // This is only called when the key is present; `#[serde(default)]` handles an absent key.
        Ok(Option::<T>::deserialize(deserializer)?.map_or(Nullable::Null, Nullable::Present))
    }
}

/// Cross-references. Purchases carry `checkoutUUID`. A refund's payments carry `refundsPayment`,
/// which is the `uuid` of the payment they refund.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct References {
    #[serde(rename = "checkoutUUID", default, skip_serializing_if = "Nullable::is_absent")]
    pub checkout_uuid: Nullable<String>,
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub refunds_payment: Nullable<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Reads a product quantity: a string that holds a decimal number (`"1"`, `"-1"`, `"0.5"`).
pub(super) fn decimal_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    if is_decimal(&text) {
        Ok(text)
    } else {
        Err(D::Error::invalid_value(Unexpected::Str(&text), &"a decimal number such as \"1\" or \"-1\""))
    }
}

/// An optional minus sign, digits, and optionally a point followed by more digits.
pub(super) fn is_decimal(text: &str) -> bool {
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    match unsigned.split_once('.') {
        Some((whole, fraction)) => digits(whole) && digits(fraction),
        None => digits(unsigned),
    }
}
