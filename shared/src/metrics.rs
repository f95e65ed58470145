//! CloudWatch Embedded Metric Format: on Lambda, metrics are JSON lines on stdout that
//! CloudWatch turns into metrics without any API call. Elsewhere nothing is printed.

use serde_json::{json, Value};

use crate::domain::AttemptRecord;

/// The namespace of every Tidings metric.
const NAMESPACE: &str = "Tidings";

/// Whether this process runs on Lambda (where stdout goes to CloudWatch Logs).
fn on_lambda() -> bool {
    std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
}

/// One EMF line: `values` are (metric name, unit, value or array of values).
fn emf_line(timestamp_ms: i64, dimensions: &[(&str, &str)], values: &[(&str, &str, Value)]) -> String {
    let mut line = json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dimensions.iter().map(|(name, _)| *name).collect::<Vec<_>>()],
                "Metrics": values.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit})).collect::<Vec<_>>(),
            }]
        }
    });
    for (name, value) in dimensions {
        line[*name] = json!(value);
    }
    for (name, _, value) in values {
        line[*name] = value.clone();
    }
    line.to_string()
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// After a batch of deliveries: how many succeeded and failed, and each latency.
pub fn deliveries(attempts: &[AttemptRecord]) {
    if on_lambda() && !attempts.is_empty() {
        println!("{}", deliveries_line(now_ms(), attempts));
    }
}

fn deliveries_line(timestamp_ms: i64, attempts: &[AttemptRecord]) -> String {
    let delivered = attempts.iter().filter(|a| a.delivered()).count();
    let latencies: Vec<u64> = attempts.iter().map(|a| a.latency_ms).collect();
    emf_line(
        timestamp_ms,
        &[("Function", "delivery")],
        &[
            ("Delivered", "Count", json!(delivered)),
            ("DeliveryFailed", "Count", json!(attempts.len() - delivered)),
            ("DeliveryLatency", "Milliseconds", json!(latencies)),
        ],
    )
}

/// An alert email SES refused (sandbox, missing identity, permissions): the only other trace is
/// an error line, so it is a metric with an alarm.
pub fn alert_failed() {
    if on_lambda() {
        println!("{}", emf_line(now_ms(), &[("Function", "delivery")], &[("AlertFailed", "Count", json!(1))]));
    }
}

/// A finished job of an ordered line whose seat could not be released (the store refused or
/// failed): its line waits, and only this metric and its alarm say so.
pub fn line_not_left() {
    if on_lambda() {
        println!("{}", emf_line(now_ms(), &[("Function", "delivery")], &[("LineNotLeft", "Count", json!(1))]));
    }
}

/// A rate-limited job came back after its slot and its grace had passed (the paced lane is
/// short of instances for the limits it serves): its slot was wasted and it booked again.
pub fn late_reservation() {
    if on_lambda() {
        println!("{}", emf_line(now_ms(), &[("Function", "delivery")], &[("LateSlots", "Count", json!(1))]));
    }
}

/// After each sweep of the ordered lines: how many had stopped moving (their head's lease had
/// lapsed) and were moved on. The sweep runs on Lambda only.
#[cfg(feature = "lambda")]
pub fn stalled_lines(count: usize) {
    if on_lambda() {
        println!("{}", emf_line(now_ms(), &[("Function", "delivery")], &[("StalledLines", "Count", json!(count))]));
    }
}

/// After publishes (one, or a publish source's batch): how many subscriptions each reached.
/// One line for up to 100 publishes (EMF's most values a line), so a batch logs one line, not
/// one a message.
pub fn published(fan_outs: &[u32]) {
    if on_lambda() {
        for chunk in fan_outs.chunks(100) {
            println!("{}", published_line(now_ms(), chunk));
        }
    }
}

fn published_line(timestamp_ms: i64, fan_outs: &[u32]) -> String {
    emf_line(
        timestamp_ms,
        &[("Function", "ingest")],
        &[("Published", "Count", json!(fan_outs.len())), ("FanOut", "Count", json!(fan_outs))],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_of_publishes_is_one_line_with_each_fan_out() {
        let line: Value = serde_json::from_str(&published_line(1_700_000_000_000, &[1, 10, 0])).unwrap();
        assert_eq!(line["Published"], 3);
        assert_eq!(line["FanOut"], json!([1, 10, 0]));
        assert_eq!(line["Function"], "ingest");
    }

    #[test]
    fn an_emf_line_declares_its_metrics_and_carries_their_values() {
        let line = emf_line(
            1_700_000_000_000,
            &[("Function", "delivery")],
            &[("Delivered", "Count", json!(3)), ("DeliveryLatency", "Milliseconds", json!([12, 40]))],
        );
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["_aws"]["Timestamp"], 1_700_000_000_000i64);
        let directive = &value["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Tidings");
        assert_eq!(directive["Dimensions"], json!([["Function"]]));
        assert_eq!(directive["Metrics"][1], json!({"Name": "DeliveryLatency", "Unit": "Milliseconds"}));
        assert_eq!(value["Function"], "delivery");
        assert_eq!(value["Delivered"], 3);
        assert_eq!(value["DeliveryLatency"], json!([12, 40]));
        assert!(!line.contains('\n'), "one line");
    }

    #[test]
    fn a_batch_of_attempts_counts_answers_outside_2xx_and_no_answer_as_failures() {
        let attempt = |status: Option<u16>, latency_ms: u64| AttemptRecord {
            organization: crate::domain::OrganizationId(uuid::Uuid::nil()),
            subscription_id: uuid::Uuid::nil(),
            message_id: "m".into(),
            event_name: "ProductUpdated".into(),
            attempt: 1,
            at: time::OffsetDateTime::UNIX_EPOCH,
            status,
            latency_ms,
            response_excerpt: String::new(),
            error: None,
            request_headers: Vec::new(),
            dead_lettered: false,
        };
        let line = deliveries_line(1, &[attempt(Some(204), 12), attempt(Some(500), 30), attempt(None, 10_000)]);
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["Delivered"], 1);
        assert_eq!(value["DeliveryFailed"], 2);
        assert_eq!(value["DeliveryLatency"], json!([12, 30, 10_000]));
    }
}
