//! The purchase and its parts, payments aside.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Number;

use super::common::{decimal_string, Extra, Nullable, References};
use super::payment::Payment;

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
