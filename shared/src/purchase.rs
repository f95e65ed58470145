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

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Error as _, Unexpected};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Number, Value};

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

// ---------------------------------------------------------------------------------------------
// The purchase
// ---------------------------------------------------------------------------------------------

/// A purchase (a receipt) in the v2 shape. Refunds use the same model, with negative amounts and
/// negative product quantities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Purchase {
    /// The origin of the purchase, e.g. `"POS"` (the Zettle app) or `"WEB_SHOP"`.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub source: Nullable<String>,
    /// Zettle's identifier of the purchase, in a compact base64 form such as `"WJwt5j7kEeuecKKsB1sX_Q"`.
    #[serde(rename = "purchaseUUID")]
    pub purchase_uuid: String,
    /// The same identifier as a version 1 UUID.
    #[serde(rename = "purchaseUUID1", default, skip_serializing_if = "Nullable::is_absent")]
    pub purchase_uuid1: Nullable<String>,
    /// The gross amount including VAT; negative for a refund.
    pub amount: i64,
    pub vat_amount: i64,
    /// The tip included in `amount`, where tipping is available.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub gratuity_amount: Nullable<i64>,
    /// Two-letter country code of the merchant, e.g. `"SE"`.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub country: Nullable<String>,
    /// ISO 4217 code, e.g. `"SEK"`.
    pub currency: String,
    /// When the purchase was made, e.g. `"2020-12-15T14:46:43.592+0000"` (see the module docs for why this is text).
    pub timestamp: String,
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub gps_coordinates: Nullable<GpsCoordinates>,
    /// Incremental receipt number.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub purchase_number: Nullable<i64>,
    /// Incremental receipt number across cash registers.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub global_purchase_number: Nullable<i64>,
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub user_display_name: Nullable<String>,
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub user_id: Nullable<i64>,
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub organization_id: Nullable<i64>,
    pub products: Vec<Product>,
    /// Discounts on the whole purchase.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub discounts: Nullable<Vec<Discount>>,
    pub payments: Vec<Payment>,
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub receipt_copy_allowed: Nullable<bool>,
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub references: Nullable<References>,
    /// When the purchase was recorded, in the same format as `timestamp`.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub created: Nullable<String>,
    /// True when this purchase has been refunded, in whole or in part.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub refunded: Nullable<bool>,
    /// True when this purchase is a refund.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub refund: Nullable<bool>,
    /// For a refund: the `purchaseUUID` of the purchase it refunds.
    #[serde(rename = "refundsPurchaseUUID", default, skip_serializing_if = "Nullable::is_absent")]
    pub refunds_purchase_uuid: Nullable<String>,
    /// For a refund: the `purchaseUUID1` of the purchase it refunds.
    #[serde(rename = "refundsPurchaseUUID1", default, skip_serializing_if = "Nullable::is_absent")]
    pub refunds_purchase_uuid1: Nullable<String>,
    /// For a refunded purchase: the `purchaseUUID`s of its refunds.
    #[serde(rename = "refundedByPurchaseUUIDs", default, skip_serializing_if = "Nullable::is_absent")]
    pub refunded_by_purchase_uuids: Nullable<Vec<String>>,
    /// For a refunded purchase: the `purchaseUUID1`s of its refunds.
    #[serde(rename = "refundedByPurchaseUUIDs1", default, skip_serializing_if = "Nullable::is_absent")]
    pub refunded_by_purchase_uuids1: Nullable<Vec<String>>,
    /// Amounts per VAT rate, keyed by the rate as text (`"25.0"`). In Zettle's examples the values
    /// are the gross amounts of the rows at that rate, not the VAT itself.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub grouped_vat_amounts: Nullable<BTreeMap<String, i64>>,
    /// Keys not modelled above, such as `cashRegister` or `serviceCharge`.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Where the purchase was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GpsCoordinates {
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub longitude: Nullable<Number>,
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub latitude: Nullable<Number>,
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub accuracy_meters: Nullable<Number>,
    #[serde(flatten)]
    pub extra: Extra,
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

/// One row of items sold (or returned, when `quantity` is negative).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    /// A decimal number as a string, e.g. `"1"`, `"-1"` or `"0.5"`. It is required, and it is
    /// rejected when it is a JSON number or a string that is not a decimal number. The API always
    /// sends a string. Accepting a number would mean either re-serializing it as a string (which
    /// breaks the round trip) or giving up a typed field.
    #[serde(deserialize_with = "decimal_string")]
    pub quantity: String,
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub product_uuid: Nullable<String>,
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub variant_uuid: Nullable<String>,
    /// e.g. `25` or `12.5`.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub vat_percentage: Nullable<Number>,
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub unit_price: Nullable<i64>,
    /// The amount VAT is charged on (the row's net amount).
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub row_taxable_amount: Nullable<i64>,
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub name: Nullable<String>,
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub description: Nullable<String>,
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub variant_name: Nullable<String>,
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub from_location_uuid: Nullable<String>,
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub to_location_uuid: Nullable<String>,
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub auto_generated: Nullable<bool>,
    /// The row's identifier within the purchase, e.g. `"0"`.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub id: Nullable<String>,
    /// e.g. `"PRODUCT"`, `"CUSTOM_AMOUNT"` or `"GIFTCARD"`.
    #[serde(rename = "type", default, skip_serializing_if = "Nullable::is_absent")]
    pub product_type: Nullable<String>,
    /// True when the item is in the merchant's product library.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub library_product: Nullable<bool>,
    /// Keys not modelled above, such as `sku`, `barcode`, `details`, or a row `discount`.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A discount on the whole purchase. The seeds show only empty `discounts` lists, so these fields
/// come from Zettle's v1 reference: a discount has either an `amount` or a `percentage`, and its
/// `quantity` is a JSON number (unlike a product's quantity).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Discount {
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub name: Nullable<String>,
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub amount: Nullable<i64>,
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub percentage: Nullable<Number>,
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub quantity: Nullable<i64>,
    #[serde(flatten)]
    pub extra: Extra,
}

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
    fn from_map(
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

/// Reads a product quantity: a string that holds a decimal number (`"1"`, `"-1"`, `"0.5"`).
fn decimal_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    if is_decimal(&text) {
        Ok(text)
    } else {
        Err(D::Error::invalid_value(Unexpected::Str(&text), &"a decimal number such as \"1\" or \"-1\""))
    }
}

/// An optional minus sign, digits, and optionally a point followed by more digits.
fn is_decimal(text: &str) -> bool {
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    match unsigned.split_once('.') {
        Some((whole, fraction)) => digits(whole) && digits(fraction),
        None => digits(unsigned),
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing and normalising
// ---------------------------------------------------------------------------------------------

/// Why a payload is not a valid purchase.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PurchaseError {
    /// The JSON path of the offending field, as the sender wrote it: `purchaseUUID`,
    /// `payments[0].amount`, `cashPayments[0].handedAmount`, `groupedVatAmounts["25.0"]`. It is
    /// `payload` when the input is not JSON or not a JSON object.
    pub field: String,
    /// A sentence that starts with `field` and says what is wrong, such as
    /// `payments[0].amount must be an integer amount in minor units`.
    pub message: String,
}

impl PurchaseError {
    fn new(field: impl Into<String>, problem: &str) -> Self {
        let field = field.into();
        let message = format!("{field} {problem}");
        PurchaseError { field, message }
    }
}

/// Parses a `PurchaseCreated` payload in the v1 or v2 shape into a v2 [`Purchase`].
///
/// A **v1** payload has `cardPayments` and/or `cashPayments`. Their entries are moved into
/// `payments` in this order: card payments, then cash payments, then the entries already in
/// `payments`, each list keeping its order. The v1 lists are then removed, and a `null` v1 list
/// counts as an empty one. For each moved entry:
///
/// - `uuid`, `amount`, `gratuityAmount` and `references` stay on the payment. These are the
///   fields a v2 payment has for every type.
/// - `type` is set to `IZETTLE_CARD` for `cardPayments` and `IZETTLE_CASH` for `cashPayments`.
///   If the entry already has a `type` (v1 does not document one), that value is kept.
/// - Every other field moves into `attributes`. For a card payment these are the fields of
///   Zettle's v2 card example: `transactionStatusInformation`, `cardPaymentEntryMode`,
///   `maskedPan`, `installmentAmount`, `referenceNumber`, `nrOfInstallments`, `cardType`,
///   `terminalVerificationResults`, `applicationIdentifier` and `applicationName`, plus any others
///   such as `authorizationCode`. For a cash payment this is `handedAmount` and any others, such
///   as `changeAmount`. `attributes` is always an object, even when it is empty.
///
/// A **v2** payload (no v1 lists) is parsed as it is.
///
/// Errors name fields as the sender wrote them. An error in a moved entry is reported as
/// `cashPayments[0].handedAmount`, not as `payments[1].attributes.handedAmount`.
pub fn parse(payload: &str) -> Result<Purchase, PurchaseError> {
    let mut value: Value =
        serde_json::from_str(payload).map_err(|e| PurchaseError::new("payload", &format!("is not valid JSON: {e}")))?;
    let Value::Object(object) = &mut value else {
        return Err(PurchaseError::new("payload", "must be a JSON object"));
    };
    adopt_service_spellings(object)?;
    let origins = upgrade_v1(object)?;
    let located = check_payment_attributes(object)
        .and_then(|()| serde_path_to_error::deserialize(value).map_err(|e| explain(steps_of(e.path()), e.inner())));
    located.map_err(|(path, problem)| {
        let path = match &origins {
            Some(origins) => restore_origin(path, origins),
            None => path,
        };
        PurchaseError::new(render(&path), &problem)
    })
}

/// Validates a `PurchaseCreated` payload and returns it as v2 JSON. See [`parse`] for how a v1
/// payload is converted.
///
/// A v2 payload comes back equal to the input as a JSON value. Key order and whitespace may
/// differ, but no key is added, dropped or changed, and `null`s stay `null`.
pub fn normalise(payload: &str) -> Result<String, PurchaseError> {
    let purchase = parse(payload)?;
    serde_json::to_string(&purchase)
        .map_err(|e| PurchaseError::new("payload", &format!("could not be serialized: {e}")))
}

/// Where an entry of the v2 `payments` list came from.
#[derive(Debug, Clone, Copy)]
struct Origin {
    /// `cardPayments`, `cashPayments` or `payments`.
    list: &'static str,
    index: usize,
    /// True when the entry's type-specific fields were moved into `attributes`.
    moved: bool,
}

/// Keys that a v1 card or cash payment shares with a v2 payment; all other keys move into `attributes`.
const PAYMENT_LEVEL_KEYS: [&str; 5] = ["uuid", "amount", "gratuityAmount", "type", "references"];

/// Takes what Zettle's service sends beside what its documentation names: `purchaseUuid` for
/// `purchaseUUID` (the Pusher API's own PurchaseCreated example), and `timestamp` / `created` as
/// epoch milliseconds (the same example; production receivers report it too), which become the
/// documented text form, e.g. `2018-01-17T09:02:27.754+0000`.
fn adopt_service_spellings(purchase: &mut Map<String, Value>) -> Result<(), PurchaseError> {
    for (seen, documented) in [("purchaseUuid", "purchaseUUID"), ("purchaseUuid1", "purchaseUUID1")] {
        if !purchase.contains_key(documented) {
            if let Some(value) = purchase.remove(seen) {
                purchase.insert(documented.to_owned(), value);
            }
        }
    }
    for key in ["timestamp", "created"] {
        if let Some(Value::Number(number)) = purchase.get(key) {
            let text = number
                .as_i64()
                .and_then(epoch_millis_as_text)
                .ok_or_else(|| PurchaseError::new(key, "must be a time: text, or epoch milliseconds"))?;
            purchase.insert(key.to_owned(), Value::String(text));
        }
    }
    Ok(())
}

/// Epoch milliseconds in the purchase API's text form, `2018-01-17T09:02:27.754+0000`.
fn epoch_millis_as_text(millis: i64) -> Option<String> {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).ok()?;
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]+0000");
    at.format(&format).ok()
}

/// Rewrites a v1 purchase into the v2 shape in place; see [`parse`]. Returns where each payment
/// came from, or `None` when the purchase already was v2.
fn upgrade_v1(purchase: &mut Map<String, Value>) -> Result<Option<Vec<Origin>>, PurchaseError> {
    if !purchase.contains_key("cardPayments") && !purchase.contains_key("cashPayments") {
        return Ok(None);
    }
    let mut payments = Vec::new();
    let mut origins = Vec::new();
    for (list, payment_type) in [("cardPayments", "IZETTLE_CARD"), ("cashPayments", "IZETTLE_CASH")] {
        for (index, entry) in take_list(purchase, list)?.into_iter().enumerate() {
            let Value::Object(fields) = entry else {
                return Err(PurchaseError::new(format!("{list}[{index}]"), "must be an object"));
            };
            payments.push(Value::Object(v1_payment(fields, list, payment_type)));
            origins.push(Origin { list, index, moved: true });
        }
    }
    for (index, entry) in take_list(purchase, "payments")?.into_iter().enumerate() {
        payments.push(entry);
        origins.push(Origin { list: "payments", index, moved: false });
    }
    purchase.insert("payments".to_owned(), Value::Array(payments));
    Ok(Some(origins))
}

/// Removes `key` from the purchase and returns its entries; absent and `null` both mean none.
fn take_list(purchase: &mut Map<String, Value>, key: &'static str) -> Result<Vec<Value>, PurchaseError> {
    match purchase.remove(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(entries)) => Ok(entries),
        Some(_) => Err(PurchaseError::new(key, "must be an array")),
    }
}

/// Turns one v1 `cardPayments` / `cashPayments` entry into a v2 payment. The service names a
/// v1 payment's id `cashPaymentUUID` / `cardPaymentUUID` as often as `uuid`; either is the uuid.
fn v1_payment(mut fields: Map<String, Value>, list: &str, payment_type: &str) -> Map<String, Value> {
    let service_id = format!("{}UUID", list.trim_end_matches('s'));
    if !fields.contains_key("uuid") {
        if let Some(id) = fields.remove(&service_id) {
            fields.insert("uuid".to_owned(), id);
        }
    }
    let mut payment = Map::new();
    let mut attributes = Map::new();
    for (key, value) in fields {
        if PAYMENT_LEVEL_KEYS.contains(&key.as_str()) {
            payment.insert(key, value);
        } else {
            attributes.insert(key, value);
        }
    }
    payment.entry("type").or_insert_with(|| Value::String(payment_type.to_owned()));
    payment.insert("attributes".to_owned(), Value::Object(attributes));
    payment
}

/// Types the attributes of every payment, so that an error can name the attribute
/// (`payments[0].attributes.handedAmount`). Problems with the payment itself (missing `type`,
/// `attributes` not an object) are left for the full deserialization to report.
fn check_payment_attributes(purchase: &Map<String, Value>) -> Result<(), Located> {
    let Some(Value::Array(payments)) = purchase.get("payments") else {
        return Ok(());
    };
    for (index, payment) in payments.iter().enumerate() {
        let (Some(Value::String(name)), Some(Value::Object(attributes))) =
            (payment.get("type"), payment.get("attributes"))
        else {
            continue;
        };
        if let Err(error) = PaymentAttributes::from_map(&PaymentType::from(name.as_str()), attributes.clone()) {
            let mut path =
                vec![Step::Key("payments".to_owned()), Step::Index(index), Step::Key("attributes".to_owned())];
            path.extend(steps_of(error.path()));
            return Err(explain(path, error.inner()));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Error paths and messages
// ---------------------------------------------------------------------------------------------

/// One step of a JSON path.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

/// A path and a problem such as "is required" or "must be an array".
type Located = (Vec<Step>, String);

fn steps_of(path: &serde_path_to_error::Path) -> Vec<Step> {
    use serde_path_to_error::Segment;
    path.iter()
        .map(|segment| match segment {
            Segment::Seq { index } => Step::Index(*index),
            Segment::Map { key } | Segment::Enum { variant: key } => Step::Key(key.clone()),
            Segment::Unknown => Step::Key("?".to_owned()),
        })
        .collect()
}

/// `payments[0].amount`, or `groupedVatAmounts["25.0"]` for a key that is not a plain name.
fn render(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Index(index) => out.push_str(&format!("[{index}]")),
            Step::Key(key) if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Step::Key(key) => out.push_str(&format!("[{key:?}]")),
        }
    }
    if out.is_empty() {
        out.push_str("payload");
    }
    out
}

const MINOR_UNITS: &str = "must be an integer amount in minor units";

/// Turns a deserialization error at `path` into a path and a problem that a sender can act on.
///
/// Serde reports a missing field as an error on the enclosing object, so the field's name is
/// taken from the message and added to the path. A wrong type or value is described from what
/// the field is (see [`expectation`]), because serde's own wording ("expected i64") is
/// written for Rust developers. Any other error is passed on with serde's message.
fn explain(mut path: Vec<Step>, error: &serde_json::Error) -> Located {
    let text = error.to_string();
    if let Some(name) = text.strip_prefix("missing field `").and_then(|rest| rest.split('`').next()) {
        path.push(Step::Key(name.to_owned()));
        return (path, "is required".to_owned());
    }
    let wrong_value = text.starts_with("invalid type:") || text.starts_with("invalid value:");
    let problem = match expectation(&path) {
        Some(problem) if wrong_value => problem.to_owned(),
        _ if wrong_value && text.ends_with("expected a string") => "must be a string".to_owned(),
        _ => format!("is invalid: {text}"),
    };
    (path, problem)
}

/// What the modelled field at `path` must be, for the fields that are not plain strings.
fn expectation(path: &[Step]) -> Option<&'static str> {
    let (last, before) = path.split_last()?;
    // The nearest enclosing key: `products` for `products[0].quantity`, `groupedVatAmounts` for
    // `groupedVatAmounts["25.0"]`.
    let container = before.iter().rev().find_map(|step| match step {
        Step::Key(key) => Some(key.as_str()),
        Step::Index(_) => None,
    });
    let key = match last {
        Step::Index(_) => {
            return match container {
                Some("products" | "discounts" | "payments") => Some("must be an object"),
                Some("refundedByPurchaseUUIDs" | "refundedByPurchaseUUIDs1") => Some("must be a string"),
                _ => None,
            }
        }
        Step::Key(_) if container == Some("groupedVatAmounts") => return Some(MINOR_UNITS),
        Step::Key(key) => key.as_str(),
    };
    Some(match key {
        "amount" | "vatAmount" | "gratuityAmount" | "unitPrice" | "rowTaxableAmount" | "handedAmount"
        | "installmentAmount" => MINOR_UNITS,
        "quantity" if container == Some("discounts") => "must be an integer",
        "quantity" => "must be a decimal number written as a string, such as \"1\" or \"-1\"",
        "purchaseNumber" | "globalPurchaseNumber" | "userId" | "organizationId" | "nrOfInstallments" => {
            "must be an integer"
        }
        "refund" | "refunded" | "receiptCopyAllowed" | "autoGenerated" | "libraryProduct" => "must be true or false",
        "vatPercentage" | "percentage" | "longitude" | "latitude" | "accuracyMeters" => "must be a number",
        "products" | "discounts" | "payments" | "refundedByPurchaseUUIDs" | "refundedByPurchaseUUIDs1" => {
            "must be an array"
        }
        "gpsCoordinates" | "references" | "attributes" | "groupedVatAmounts" => "must be an object",
        _ => return None,
    })
}

/// Rewrites `payments[i]…` to the place the sender put that payment, e.g.
/// `payments[1].attributes.handedAmount` to `cashPayments[0].handedAmount`.
fn restore_origin(path: Vec<Step>, origins: &[Origin]) -> Vec<Step> {
    let (Some(Step::Key(list)), Some(Step::Index(index))) = (path.first(), path.get(1)) else {
        return path;
    };
    let Some(origin) = origins.get(*index).filter(|_| list == "payments") else {
        return path;
    };
    let mut rest = &path[2..];
    // A moved entry's fields were top-level fields of the v1 entry.
    if let [Step::Key(key), inner @ ..] = rest {
        if origin.moved && key == "attributes" && !inner.is_empty() {
            rest = inner;
        }
    }
    let mut restored = vec![Step::Key(origin.list.to_owned()), Step::Index(origin.index)];
    restored.extend_from_slice(rest);
    restored
}

#[cfg(test)]
mod tests {
    use super::*;

    const SWISH: &str = include_str!("../tests/fixtures/purchases/purchase_swish.json");
    // In seed 002, `gpsCoordinates` of both purchases in the refund pair is elided as `{ ... }`.
    // refund.json and refunded.json fill it with plausible Stockholm coordinates in the usual
    // `{"longitude", "latitude", "accuracyMeters"}` form. Everything else is the seed, unchanged.
    const REFUND: &str = include_str!("../tests/fixtures/purchases/refund.json");
    const REFUNDED: &str = include_str!("../tests/fixtures/purchases/refunded.json");
    const V1: &str = include_str!("../tests/fixtures/purchases/purchase_v1.json");
    const V1_AS_V2: &str = include_str!("../tests/fixtures/purchases/purchase_v1_as_v2.json");
    const PUSHER_DOCS: &str = include_str!("../tests/fixtures/purchases/purchase_pusher_docs.json");

    /// The Pusher API's own PurchaseCreated example: `purchaseUuid`, epoch-millisecond
    /// `timestamp`, `cashPaymentUUID`. Accepted, and delivered in the v2 shape.
    #[test]
    fn the_pusher_apis_own_purchase_example_is_accepted_as_v2() {
        let out: Value = serde_json::from_str(&normalise(PUSHER_DOCS).unwrap()).unwrap();
        assert_eq!(out["purchaseUUID"], "244f60a0-fb65-11e7-ae57-406959a78d8a");
        assert!(out.get("purchaseUuid").is_none());
        assert_eq!(out["timestamp"], "2018-01-17T09:02:27.754+0000");
        assert_eq!(out["created"], "2018-01-17T09:02:27.754+0000", "unchanged");
        assert_eq!(
            out["payments"],
            serde_json::json!([{"uuid": "244638e0-fb65-11e7-a8b4-6445eeeb09b3", "amount": 8300, "type": "IZETTLE_CASH",
                "attributes": {"handedAmount": 8300, "cashPaymentUUID1": "244638e0-fb65-11e7-a8b4-6445eeeb09b3"}}])
        );
        assert_eq!(out["userUuid"], "1b881020-fb65-11e7-bcf2-692e23651920", "unknown fields are kept");
        // Still refused: a time that is neither text nor epoch milliseconds, a payment without an id.
        let mut bad: Value = serde_json::from_str(PUSHER_DOCS).unwrap();
        bad["timestamp"] = serde_json::json!(1.5);
        assert_eq!(error_for(&bad.to_string()).field, "timestamp");
        let mut bad: Value = serde_json::from_str(PUSHER_DOCS).unwrap();
        bad["cashPayments"][0].as_object_mut().unwrap().remove("cashPaymentUUID");
        assert_eq!(error_for(&bad.to_string()).message, "cashPayments[0].uuid is required");
    }

    fn json(text: &str) -> Value {
        serde_json::from_str(text).expect("test JSON is valid")
    }

    fn assert_round_trips(text: &str) {
        let out = normalise(text).expect("the purchase is valid");
        assert_eq!(json(&out), json(text));
    }

    /// The Swish purchase with `edit` applied, as text.
    fn swish_with(edit: impl FnOnce(&mut Value)) -> String {
        let mut value = json(SWISH);
        edit(&mut value);
        value.to_string()
    }

    fn error_for(payload: &str) -> PurchaseError {
        normalise(payload).expect_err("the payload is invalid")
    }

    #[test]
    fn seed_purchases_round_trip_unchanged() {
        assert_round_trips(SWISH);
        assert_round_trips(REFUND);
        assert_round_trips(REFUNDED);
        assert_round_trips(V1_AS_V2);
    }

    #[test]
    fn typed_access_to_a_swish_purchase() {
        let purchase = parse(SWISH).unwrap();
        assert_eq!(purchase.purchase_uuid, "WJwt5j7kEeuecKKsB1sX_Q");
        assert_eq!(purchase.source.get().map(String::as_str), Some("POS"));
        assert_eq!((purchase.amount, purchase.vat_amount), (70000, 14000));
        assert_eq!(purchase.currency, "SEK");
        assert_eq!(purchase.grouped_vat_amounts.get().unwrap()["25.0"], 70000);
        let gps = purchase.gps_coordinates.get().unwrap();
        assert_eq!(gps.latitude.get().and_then(Number::as_f64), Some(66.609375));
        assert_eq!(gps.accuracy_meters.get().and_then(Number::as_i64), Some(165));
        assert_eq!(
            purchase.references.get().unwrap().checkout_uuid.get().unwrap(),
            "589c2de6-3ee4-11eb-9f71-a3ad065a16fc"
        );
        assert_eq!(purchase.discounts, Nullable::Present(vec![]));

        let product = &purchase.products[0];
        assert_eq!(product.quantity, "1");
        assert_eq!(product.vat_percentage.get().and_then(Number::as_i64), Some(25));
        assert_eq!(product.unit_price, Nullable::Present(70000));
        assert_eq!(product.product_type.get().map(String::as_str), Some("PRODUCT"));

        let payment = &purchase.payments[0];
        assert_eq!(payment.payment_type, PaymentType::Swish);
        assert_eq!(payment.attributes, Nullable::Present(PaymentAttributes::Other(Map::new())));
    }

    #[test]
    fn typed_access_to_a_refund_pair() {
        let refund = parse(REFUND).unwrap();
        let refunded = parse(REFUNDED).unwrap();

        assert_eq!(refund.refund, Nullable::Present(true));
        assert_eq!(refund.amount, -10000);
        assert_eq!(refund.products[0].quantity, "-1");
        assert_eq!(refund.refunds_purchase_uuid1.get().unwrap(), "6a7d7a9c-efd8-4a93-b0ff-45d55d212774");
        assert_eq!(refund.refunds_purchase_uuid.get(), Some(&refunded.purchase_uuid));
        assert_eq!(refund.refunds_purchase_uuid1, refunded.purchase_uuid1);
        assert_eq!(refund.grouped_vat_amounts.get().unwrap()["12.0"], -10000);

        let cash = &refund.payments[0];
        assert_eq!(cash.payment_type, PaymentType::IzettleCash);
        let handed = cash.attributes.get().and_then(PaymentAttributes::cash).and_then(|c| c.handed_amount.get());
        assert_eq!(handed, Some(&-10000));
        let refunds_payment = cash.references.get().and_then(|r| r.refunds_payment.get());
        assert_eq!(refunds_payment, Some(&refunded.payments[0].uuid));

        assert_eq!(refunded.refunded, Nullable::Present(true));
        assert_eq!(
            refunded.refunded_by_purchase_uuids1,
            Nullable::Present(vec!["d71e814c-d705-43e7-ac9c-831449d5fc99".to_owned()])
        );
        assert_eq!(refunded.refunded_by_purchase_uuids, Nullable::Present(vec![refund.purchase_uuid.clone()]));
        assert_eq!(refunded.grouped_vat_amounts.get().unwrap()["12.0"], 20000);
        assert!(refunded.products[0].product_uuid.is_absent());
        let handed = refunded.payments[0].attributes.get().and_then(PaymentAttributes::cash).map(|c| &c.handed_amount);
        assert_eq!(handed, Some(&Nullable::Present(20000)));
    }

    #[test]
    fn v1_purchase_normalises_to_the_expected_v2_purchase() {
        let out = json(&normalise(V1).unwrap());
        assert_eq!(out, json(V1_AS_V2));
        assert!(out.get("cardPayments").is_none() && out.get("cashPayments").is_none());
    }

    #[test]
    fn v1_payments_are_typed_after_the_upgrade() {
        let purchase = parse(V1).unwrap();
        let types: Vec<_> = purchase.payments.iter().map(|p| p.payment_type.clone()).collect();
        assert_eq!(types, [PaymentType::IzettleCard, PaymentType::IzettleCash, PaymentType::IzettleInvoice]);

        let card = &purchase.payments[0];
        assert_eq!(card.gratuity_amount, Nullable::Present(0));
        let attributes = card.attributes.get().and_then(PaymentAttributes::card).unwrap();
        assert_eq!(attributes.masked_pan.get().unwrap(), "476173******0119");
        assert_eq!(attributes.card_type.get().unwrap(), "VISA");
        assert_eq!(attributes.nr_of_installments, Nullable::Present(0));
        assert!(attributes.installment_amount.is_null());
        assert!(attributes.extra.is_empty());

        let cash = purchase.payments[1].attributes.get().and_then(PaymentAttributes::cash).unwrap();
        assert_eq!(cash.handed_amount, Nullable::Present(1000));

        let invoice = purchase.payments[2].attributes.get().and_then(PaymentAttributes::invoice).unwrap();
        assert_eq!(invoice.invoice_nr.get().unwrap(), "iz37");
        assert_eq!(invoice.due_date.get().unwrap(), "2017-10-12");
        assert_eq!(invoice.order_uuid.get().unwrap(), "d5b126c4-979e-11e7-9af0-a3d2806c42a1");
    }

    #[test]
    fn v1_lists_keep_references_and_an_explicit_type() {
        let payload = swish_with(|p| {
            p["cardPayments"] = serde_json::json!([{
                "uuid": "c1", "amount": 500, "type": "IZETTLE_CARD_ONLINE",
                "references": {"refundsPayment": "p0"}, "paymentlinkOrderUuid": "o1"
            }]);
            p["cashPayments"] = Value::Null;
        });
        let out = json(&normalise(&payload).unwrap());
        assert!(out.get("cashPayments").is_none());
        assert_eq!(
            out["payments"][0],
            serde_json::json!({
                "uuid": "c1", "amount": 500, "type": "IZETTLE_CARD_ONLINE",
                "references": {"refundsPayment": "p0"}, "attributes": {"paymentlinkOrderUuid": "o1"}
            })
        );
        // The v2 entry that was already there comes after the moved ones.
        assert_eq!(out["payments"][1]["type"], "SWISH");
        assert_eq!(out["payments"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn a_v1_purchase_without_payments_gets_a_payments_list() {
        let payload = swish_with(|p| {
            let object = p.as_object_mut().unwrap();
            object.remove("payments");
            object.insert(
                "cashPayments".into(),
                serde_json::json!([{"uuid": "k", "amount": 70000, "handedAmount": 70000}]),
            );
        });
        let out = json(&normalise(&payload).unwrap());
        assert_eq!(
            out["payments"],
            serde_json::json!([{
                "uuid": "k", "amount": 70000, "type": "IZETTLE_CASH", "attributes": {"handedAmount": 70000}
            }])
        );
    }

    #[test]
    fn unknown_fields_are_kept_everywhere() {
        let payload = swish_with(|p| {
            p["cashRegister"] = serde_json::json!({"displayName": "Kassa 2", "uuid": "YdVwSn4i111DZepjFuVBw"});
            p["gpsCoordinates"]["altitude"] = serde_json::json!(12);
            p["references"]["orderReference"] = serde_json::json!("web-17");
            p["products"][0]["sku"] = serde_json::json!("HC-60");
            p["products"][0]["discount"] = serde_json::json!({"quantity": 1, "percentage": 10});
            p["payments"] = serde_json::json!([
                {
                    "uuid": "3d38a2b4-3a02-11eb-bdbf-9f47e7b17f57", "amount": 50000, "type": "IZETTLE_CARD_ONLINE",
                    "createdAt": "2020-12-15T14:46:40.000+0000",
                    "attributes": {
                        "cardType": "MASTERCARD",
                        "paymentlinkOrderUuid": "bb6d3b38-3a01-11eb-970c-e3b88c945415"
                    }
                },
                {
                    "uuid": "ec138d2e-8e29-41c0-a4c4-17b2b4ab7f8b", "amount": 20000, "type": "IZETTLE_CASH",
                    "attributes": {"handedAmount": 50000, "changeAmount": 30000}
                }
            ]);
        });
        assert_round_trips(&payload);

        let purchase = parse(&payload).unwrap();
        assert_eq!(purchase.extra["cashRegister"]["displayName"], "Kassa 2");
        assert_eq!(purchase.gps_coordinates.get().unwrap().extra["altitude"], 12);
        assert_eq!(purchase.references.get().unwrap().extra["orderReference"], "web-17");
        assert_eq!(purchase.products[0].extra["sku"], "HC-60");
        assert_eq!(purchase.products[0].extra["discount"]["percentage"], 10);

        let card = &purchase.payments[0];
        assert_eq!(card.payment_type, PaymentType::IzettleCardOnline);
        assert_eq!(card.extra["createdAt"], "2020-12-15T14:46:40.000+0000");
        let attributes = card.attributes.get().and_then(PaymentAttributes::card).unwrap();
        assert_eq!(attributes.card_type.get().unwrap(), "MASTERCARD");
        assert_eq!(attributes.extra["paymentlinkOrderUuid"], "bb6d3b38-3a01-11eb-970c-e3b88c945415");
        let cash = purchase.payments[1].attributes.get().and_then(PaymentAttributes::cash).unwrap();
        assert_eq!(cash.extra["changeAmount"], 30000);
    }

    #[test]
    fn unknown_payment_types_are_kept() {
        let payload = swish_with(|p| {
            p["payments"][0]["type"] = serde_json::json!("KLARNA");
            p["payments"][0]["attributes"] = serde_json::json!({"klarnaOrderId": "f7abd5be"});
            p["payments"][0]["commission"] = serde_json::json!({"totalAmount": 5621, "vatRate": 17.0});
        });
        assert_round_trips(&payload);
        let payment = &parse(&payload).unwrap().payments[0];
        assert_eq!(payment.payment_type, PaymentType::Other("KLARNA".to_owned()));
        let Nullable::Present(PaymentAttributes::Other(attributes)) = &payment.attributes else {
            panic!("expected raw attributes, got {:?}", payment.attributes);
        };
        assert_eq!(attributes["klarnaOrderId"], "f7abd5be");
        assert_eq!(payment.extra["commission"]["vatRate"], 17.0);
    }

    #[test]
    fn nulls_stay_null_and_absent_fields_stay_absent() {
        let payload = swish_with(|p| {
            let object = p.as_object_mut().unwrap();
            object.remove("discounts");
            object.remove("references");
            object.insert("gpsCoordinates".into(), Value::Null);
            object.insert("userDisplayName".into(), Value::Null);
            p["products"][0]["description"] = Value::Null;
            p["payments"][0] =
                serde_json::json!({"uuid": "x", "amount": 70000, "type": "IZETTLE_CARD", "attributes": null});
        });
        assert_round_trips(&payload);
        let out = json(&normalise(&payload).unwrap());
        assert!(out.get("discounts").is_none() && out.get("references").is_none());
        assert_eq!(out["gpsCoordinates"], Value::Null);
        assert_eq!(out["payments"][0]["attributes"], Value::Null);

        let purchase = parse(&payload).unwrap();
        assert!(purchase.discounts.is_absent());
        assert!(purchase.gps_coordinates.is_null());
        assert_eq!(purchase.user_display_name.into_option(), None);
    }

    #[test]
    fn a_payment_without_attributes_has_none() {
        let payload = swish_with(|p| {
            p["payments"][0].as_object_mut().unwrap().remove("attributes");
        });
        assert_round_trips(&payload);
        assert!(parse(&payload).unwrap().payments[0].attributes.is_absent());
    }

    #[test]
    fn numbers_keep_their_spelling() {
        let payload = swish_with(|p| {
            p["products"][0]["vatPercentage"] = serde_json::json!(12.5);
            p["gpsCoordinates"]["accuracyMeters"] = serde_json::json!(165.0);
            p["discounts"] = serde_json::json!([{"name": "Staff", "percentage": 50, "quantity": 1}]);
        });
        assert_round_trips(&payload);
        let purchase = parse(&payload).unwrap();
        let discount = &purchase.discounts.get().unwrap()[0];
        assert_eq!(discount.percentage.get().and_then(Number::as_i64), Some(50));
        assert_eq!(discount.quantity, Nullable::Present(1));
    }

    #[test]
    fn decimal_quantities_are_accepted() {
        for quantity in ["1", "-1", "0.5", "-2.250", "10"] {
            let payload = swish_with(|p| p["products"][0]["quantity"] = serde_json::json!(quantity));
            assert_eq!(parse(&payload).unwrap().products[0].quantity, quantity);
        }
        for quantity in ["", "-", "1.", ".5", "1e3", "+1", "abc", " 1"] {
            assert!(!is_decimal(quantity), "{quantity:?}");
        }
    }

    #[test]
    fn a_missing_required_field_is_named() {
        for field in ["purchaseUUID", "amount", "vatAmount", "currency", "timestamp", "products", "payments"] {
            let error = error_for(&swish_with(|p| {
                p.as_object_mut().unwrap().remove(field);
            }));
            assert_eq!(error.field, field);
            assert_eq!(error.message, format!("{field} is required"));
        }
        let error = error_for(&swish_with(|p| {
            p["payments"][0].as_object_mut().unwrap().remove("uuid");
        }));
        assert_eq!(error.field, "payments[0].uuid");
        assert_eq!(error.message, "payments[0].uuid is required");
        let error = error_for(&swish_with(|p| {
            p["products"][0].as_object_mut().unwrap().remove("quantity");
        }));
        assert_eq!(error.field, "products[0].quantity");
    }

    #[test]
    fn a_wrong_amount_is_named() {
        let error = error_for(&swish_with(|p| p["payments"][0]["amount"] = serde_json::json!("abc")));
        assert_eq!(error.field, "payments[0].amount");
        assert_eq!(error.message, "payments[0].amount must be an integer amount in minor units");
        assert_eq!(error.to_string(), error.message);

        let error = error_for(&swish_with(|p| p["amount"] = serde_json::json!(700.5)));
        assert_eq!(error.message, "amount must be an integer amount in minor units");
        let error = error_for(&swish_with(|p| p["groupedVatAmounts"]["25.0"] = serde_json::json!("70000")));
        assert_eq!(error.field, "groupedVatAmounts[\"25.0\"]");
        assert_eq!(error.message, "groupedVatAmounts[\"25.0\"] must be an integer amount in minor units");
    }

    #[test]
    fn wrong_shapes_are_named() {
        let cases = [
            (swish_with(|p| p["payments"] = serde_json::json!({"uuid": "x"})), "payments", "payments must be an array"),
            (
                swish_with(|p| p["payments"][0] = serde_json::json!("SWISH")),
                "payments[0]",
                "payments[0] must be an object",
            ),
            (swish_with(|p| p["products"] = serde_json::json!("Haircut")), "products", "products must be an array"),
            (swish_with(|p| p["purchaseUUID"] = serde_json::json!(7)), "purchaseUUID", "purchaseUUID must be a string"),
            (
                swish_with(|p| p["payments"][0]["type"] = Value::Null),
                "payments[0].type",
                "payments[0].type must be a string",
            ),
            (swish_with(|p| p["refund"] = serde_json::json!("no")), "refund", "refund must be true or false"),
            (
                swish_with(|p| p["gpsCoordinates"] = serde_json::json!([1, 2])),
                "gpsCoordinates",
                "gpsCoordinates must be an object",
            ),
            (
                swish_with(|p| p["payments"][0]["attributes"] = serde_json::json!("none")),
                "payments[0].attributes",
                "payments[0].attributes must be an object",
            ),
            (
                swish_with(|p| p["refundedByPurchaseUUIDs"] = serde_json::json!(["a", 2])),
                "refundedByPurchaseUUIDs[1]",
                "refundedByPurchaseUUIDs[1] must be a string",
            ),
            (
                swish_with(|p| p["discounts"] = serde_json::json!([{"quantity": "1"}])),
                "discounts[0].quantity",
                "discounts[0].quantity must be an integer",
            ),
        ];
        for (payload, field, message) in cases {
            let error = error_for(&payload);
            assert_eq!((error.field.as_str(), error.message.as_str()), (field, message));
        }
    }

    #[test]
    fn a_product_quantity_must_be_a_decimal_string() {
        let expected = "products[0].quantity must be a decimal number written as a string, such as \"1\" or \"-1\"";
        for quantity in [serde_json::json!(1), serde_json::json!("abc"), Value::Null] {
            let error = error_for(&swish_with(|p| p["products"][0]["quantity"] = quantity));
            assert_eq!(error.field, "products[0].quantity");
            assert_eq!(error.message, expected);
        }
    }

    #[test]
    fn a_wrong_attribute_is_named() {
        let payload = REFUND.replace("\"handedAmount\": -10000", "\"handedAmount\": \"-10000\"");
        let error = error_for(&payload);
        assert_eq!(error.field, "payments[0].attributes.handedAmount");
        assert_eq!(error.message, "payments[0].attributes.handedAmount must be an integer amount in minor units");

        let payload = V1_AS_V2.replace("\"invoiceNr\": \"iz37\"", "\"invoiceNr\": 37");
        assert_eq!(error_for(&payload).message, "payments[2].attributes.invoiceNr must be a string");
    }

    #[test]
    fn errors_in_v1_lists_name_the_v1_field() {
        let payload = V1.replace("\"handedAmount\": 1000", "\"handedAmount\": \"1000\"");
        assert_eq!(
            error_for(&payload).message,
            "cashPayments[0].handedAmount must be an integer amount in minor units"
        );

        let payload = V1.replace("\"amount\": 1000,", "\"amount\": \"abc\",");
        assert_eq!(error_for(&payload).message, "cashPayments[0].amount must be an integer amount in minor units");

        let payload = V1.replace("\"nrOfInstallments\": 0", "\"nrOfInstallments\": \"none\"");
        assert_eq!(error_for(&payload).message, "cardPayments[0].nrOfInstallments must be an integer");

        let payload = V1.replace("\"uuid\": \"165b88a0-07a3-11e6-9dae-43c30f1bff5b\",", "");
        assert_eq!(error_for(&payload).message, "cardPayments[0].uuid is required");

        // The generic list keeps its own indexes even though it now comes after the moved entries.
        let payload = V1.replace("\"amount\": 2960", "\"amount\": null");
        assert_eq!(error_for(&payload).message, "payments[0].amount must be an integer amount in minor units");

        let mut value = json(V1);
        value["cardPayments"] = serde_json::json!({"uuid": "x"});
        let error = error_for(&value.to_string());
        assert_eq!((error.field.as_str(), error.message.as_str()), ("cardPayments", "cardPayments must be an array"));

        value["cardPayments"] = serde_json::json!(["x"]);
        assert_eq!(error_for(&value.to_string()).message, "cardPayments[0] must be an object");

        value["cardPayments"] = serde_json::json!([]);
        value["payments"] = serde_json::json!("none");
        assert_eq!(error_for(&value.to_string()).message, "payments must be an array");
    }

    #[test]
    fn a_payload_that_is_not_a_json_object_is_rejected() {
        for payload in ["", "{\"purchaseUUID\": ", "not json", "[]", "42", "null"] {
            let error = error_for(payload);
            assert_eq!(error.field, "payload", "{payload:?}");
            assert!(error.message.starts_with("payload "), "{}", error.message);
        }
        assert!(error_for("{").message.starts_with("payload is not valid JSON"));
        assert_eq!(error_for("[]").message, "payload must be a JSON object");
    }

    #[test]
    fn payment_type_names_round_trip() {
        let names = [
            "IZETTLE_CARD",
            "IZETTLE_CARD_ONLINE",
            "IZETTLE_CASH",
            "IZETTLE_INVOICE",
            "SWISH",
            "VIPPS",
            "MOBILE_PAY",
            "PAYPAL",
            "STORE_CREDIT",
            "CUSTOM",
            "GIFTCARD",
        ];
        for name in names {
            let parsed: PaymentType = serde_json::from_value(Value::from(name)).unwrap();
            assert_eq!(parsed.to_string(), name);
            assert_eq!(serde_json::to_value(&parsed).unwrap(), Value::from(name));
            assert_eq!(PaymentType::from(name.to_owned()), parsed);
        }
        assert_eq!(PaymentType::from("IZETTLE_CARD"), PaymentType::IzettleCard);
        assert_eq!(PaymentType::from("GIFTCARD"), PaymentType::Other("GIFTCARD".to_owned()));
    }

    #[test]
    fn a_purchase_built_in_code_serializes_without_invented_fields() {
        let mut purchase = parse(SWISH).unwrap();
        purchase.discounts = Nullable::Absent;
        purchase.payments[0].attributes = Nullable::Absent;
        purchase.gratuity_amount = 0.into();
        let out = serde_json::to_value(&purchase).unwrap();
        assert!(out.get("discounts").is_none());
        assert!(out["payments"][0].get("attributes").is_none());
        assert_eq!(out["gratuityAmount"], 0);
    }
}
