//! Payments: their types and type-specific attributes.

use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::common::{Extra, Nullable, References};

// ---------------------------------------------------------------------------------------------
// Payments
// ---------------------------------------------------------------------------------------------

/// A payment in the v2 `payments` list.
///
/// `attributes` is typed by `type`. The JSON may put `attributes` before `type` (both Zettle's
/// examples and `serde_json`'s sorted maps do), so `Deserialize` reads the payment with the
/// attributes left raw and types them once the payment type is known.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    pub uuid: String,
    /// Includes `gratuityAmount`, if any; negative for a refund.
    pub amount: i64,
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub gratuity_amount: Nullable<i64>,
    #[serde(rename = "type")]
    pub payment_type: PaymentType,
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub references: Nullable<References>,
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub attributes: Nullable<PaymentAttributes>,
    /// Keys not modelled above, such as `createdAt`.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The shape [`Payment`] is read in before its attributes are typed.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPayment {
    uuid: String,
    amount: i64,
    #[serde(default)]
    gratuity_amount: Nullable<i64>,
    #[serde(rename = "type")]
    payment_type: PaymentType,
    #[serde(default)]
    references: Nullable<References>,
    #[serde(default)]
    attributes: Nullable<Map<String, Value>>,
    #[serde(flatten)]
    extra: Extra,
}

impl<'de> Deserialize<'de> for Payment {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawPayment::deserialize(deserializer)?;
        let attributes = match raw.attributes {
            Nullable::Absent => Nullable::Absent,
            Nullable::Null => Nullable::Null,
            Nullable::Present(map) => Nullable::Present(
                // This error names only the payment. `parse` checks attributes first, so its
                // errors can name the attribute itself.
                PaymentAttributes::from_map(&raw.payment_type, map)
                    .map_err(|e| D::Error::custom(format_args!("attributes.{}: {}", e.path(), e.inner())))?,
            ),
        };
        Ok(Payment {
            uuid: raw.uuid,
            amount: raw.amount,
            gratuity_amount: raw.gratuity_amount,
            payment_type: raw.payment_type,
            references: raw.references,
            attributes,
            extra: raw.extra,
        })
    }
}

/// The payment types Zettle documents. Other names are kept as they are, because Zettle warns
/// that it may add more.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PaymentType {
    /// `IZETTLE_CARD`: taken with a Zettle card reader.
    IzettleCard,
    /// `IZETTLE_CARD_ONLINE`: taken online, e.g. through a payment link.
    IzettleCardOnline,
    /// `IZETTLE_CASH`
    IzettleCash,
    /// `IZETTLE_INVOICE`
    IzettleInvoice,
    /// `SWISH`
    Swish,
    /// `VIPPS`
    Vipps,
    /// `MOBILE_PAY`
    MobilePay,
    /// `PAYPAL`
    Paypal,
    /// `STORE_CREDIT`
    StoreCredit,
    /// `CUSTOM`
    Custom,
    /// Any other name, exactly as sent. It never holds one of the names above: build values
    /// with `From<&str>`, which always picks the named variant.
    Other(String),
}

impl PaymentType {
    /// The name on the wire, e.g. `"IZETTLE_CARD"`.
    pub fn as_str(&self) -> &str {
        match self {
            PaymentType::IzettleCard => "IZETTLE_CARD",
            PaymentType::IzettleCardOnline => "IZETTLE_CARD_ONLINE",
            PaymentType::IzettleCash => "IZETTLE_CASH",
            PaymentType::IzettleInvoice => "IZETTLE_INVOICE",
            PaymentType::Swish => "SWISH",
            PaymentType::Vipps => "VIPPS",
            PaymentType::MobilePay => "MOBILE_PAY",
            PaymentType::Paypal => "PAYPAL",
            PaymentType::StoreCredit => "STORE_CREDIT",
            PaymentType::Custom => "CUSTOM",
            PaymentType::Other(name) => name,
        }
    }

    /// The named variant for `name`, if there is one.
    fn known(name: &str) -> Option<Self> {
        Some(match name {
            "IZETTLE_CARD" => PaymentType::IzettleCard,
            "IZETTLE_CARD_ONLINE" => PaymentType::IzettleCardOnline,
            "IZETTLE_CASH" => PaymentType::IzettleCash,
            "IZETTLE_INVOICE" => PaymentType::IzettleInvoice,
            "SWISH" => PaymentType::Swish,
            "VIPPS" => PaymentType::Vipps,
            "MOBILE_PAY" => PaymentType::MobilePay,
            "PAYPAL" => PaymentType::Paypal,
            "STORE_CREDIT" => PaymentType::StoreCredit,
            "CUSTOM" => PaymentType::Custom,
            _ => return None,
        })
    }
}

impl From<&str> for PaymentType {
    fn from(name: &str) -> Self {
        PaymentType::known(name).unwrap_or_else(|| PaymentType::Other(name.to_owned()))
    }
}

impl From<String> for PaymentType {
    fn from(name: String) -> Self {
        PaymentType::known(&name).unwrap_or(PaymentType::Other(name))
    }
}

impl fmt::Display for PaymentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for PaymentType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for PaymentType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(PaymentType::from)
    }
}

/// A payment's `attributes`, typed by the payment's type.
#[derive(Debug, Clone, PartialEq)]
pub enum PaymentAttributes {
    /// For `IZETTLE_CARD` and `IZETTLE_CARD_ONLINE`.
    Card(CardAttributes),
    /// For `IZETTLE_CASH`.
    Cash(CashAttributes),
    /// For `IZETTLE_INVOICE`.
    Invoice(InvoiceAttributes),
    /// For every other type, exactly as sent. `SWISH`, `VIPPS`, `MOBILE_PAY`, `STORE_CREDIT` and
    /// `CUSTOM` have no attributes (at most an empty object). Types Zettle added later (e.g. PayPal's
    /// `paypalId`) keep theirs here.
    Other(Map<String, Value>),
}

impl PaymentAttributes {
    /// Types `attributes` according to `payment_type`.
    pub(super) fn from_map(
        payment_type: &PaymentType,
        attributes: Map<String, Value>,
    ) -> Result<Self, serde_path_to_error::Error<serde_json::Error>> {
        Ok(match payment_type {
            PaymentType::IzettleCard | PaymentType::IzettleCardOnline => {
                PaymentAttributes::Card(serde_path_to_error::deserialize(Value::Object(attributes))?)
            }
            PaymentType::IzettleCash => {
                PaymentAttributes::Cash(serde_path_to_error::deserialize(Value::Object(attributes))?)
            }
            PaymentType::IzettleInvoice => {
                PaymentAttributes::Invoice(serde_path_to_error::deserialize(Value::Object(attributes))?)
            }
            _ => PaymentAttributes::Other(attributes),
        })
    }

    pub fn card(&self) -> Option<&CardAttributes> {
        match self {
            PaymentAttributes::Card(card) => Some(card),
            _ => None,
        }
    }

    pub fn cash(&self) -> Option<&CashAttributes> {
        match self {
            PaymentAttributes::Cash(cash) => Some(cash),
            _ => None,
        }
    }

    pub fn invoice(&self) -> Option<&InvoiceAttributes> {
        match self {
            PaymentAttributes::Invoice(invoice) => Some(invoice),
            _ => None,
        }
    }
}

impl Serialize for PaymentAttributes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            PaymentAttributes::Card(card) => card.serialize(serializer),
            PaymentAttributes::Cash(cash) => cash.serialize(serializer),
            PaymentAttributes::Invoice(invoice) => invoice.serialize(serializer),
            PaymentAttributes::Other(map) => map.serialize(serializer),
        }
    }
}

/// Attributes of a card payment (`IZETTLE_CARD`, `IZETTLE_CARD_ONLINE`). These are the fields of
/// Zettle's v2 card example. Others, such as `authorizationCode`, `cardHolderVerificationMethod`
/// and `paymentlinkOrderUuid`, are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CardAttributes {
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub transaction_status_information: Nullable<String>,
    /// e.g. `"EMV"`, `"CONTACTLESS_EMV"`, `"ECOMMERCE"`.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub card_payment_entry_mode: Nullable<String>,
    /// e.g. `"476173******0119"`.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub masked_pan: Nullable<String>,
    /// Zettle sends this as `null` when the payment was not made in instalments.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub installment_amount: Nullable<i64>,
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub reference_number: Nullable<String>,
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub nr_of_installments: Nullable<i64>,
    /// e.g. `"VISA"`, `"MASTERCARD"`.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub card_type: Nullable<String>,
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub terminal_verification_results: Nullable<String>,
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub application_identifier: Nullable<String>,
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub application_name: Nullable<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Attributes of a cash payment (`IZETTLE_CASH`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CashAttributes {
    /// What the customer handed over; negative for a refund.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub handed_amount: Nullable<i64>,
    /// Keys not modelled above, such as `changeAmount`.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Attributes of an invoice payment (`IZETTLE_INVOICE`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceAttributes {
    #[serde(rename = "orderUUID", default, skip_serializing_if = "Nullable::is_absent")]
    pub order_uuid: Nullable<String>,
    /// e.g. `"iz37"`.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub invoice_nr: Nullable<String>,
    /// A date such as `"2017-10-12"`.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub due_date: Nullable<String>,
    #[serde(flatten)]
    pub extra: Extra,
}
