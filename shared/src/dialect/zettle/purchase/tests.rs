//! The models and the normaliser against the seeds' purchases.

use serde_json::{Map, Number, Value};

use super::common::is_decimal;
use super::*;

const SWISH: &str = include_str!("../../../../tests/fixtures/purchases/purchase_swish.json");
// In seed 002, `gpsCoordinates` of both purchases in the refund pair is elided as `{ ... }`.
// refund.json and refunded.json fill it with plausible Stockholm coordinates in the usual
// `{"longitude", "latitude", "accuracyMeters"}` form. Everything else is the seed, unchanged.
const REFUND: &str = include_str!("../../../../tests/fixtures/purchases/refund.json");
const REFUNDED: &str = include_str!("../../../../tests/fixtures/purchases/refunded.json");
const V1: &str = include_str!("../../../../tests/fixtures/purchases/purchase_v1.json");
const V1_AS_V2: &str = include_str!("../../../../tests/fixtures/purchases/purchase_v1_as_v2.json");
const PUSHER_DOCS: &str = include_str!("../../../../tests/fixtures/purchases/purchase_pusher_docs.json");

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
    assert_eq!(purchase.references.get().unwrap().checkout_uuid.get().unwrap(), "589c2de6-3ee4-11eb-9f71-a3ad065a16fc");
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
        object
            .insert("cashPayments".into(), serde_json::json!([{"uuid": "k", "amount": 70000, "handedAmount": 70000}]));
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
        (swish_with(|p| p["payments"][0] = serde_json::json!("SWISH")), "payments[0]", "payments[0] must be an object"),
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
    assert_eq!(error_for(&payload).message, "cashPayments[0].handedAmount must be an integer amount in minor units");

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
