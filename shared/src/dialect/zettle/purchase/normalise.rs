//! Parsing, the v1 → v2 upgrade, and errors that name the field.

use serde_json::{Map, Value};

use super::model::Purchase;
use super::payment::{PaymentAttributes, PaymentType};

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
