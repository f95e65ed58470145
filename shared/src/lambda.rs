//! Glue between the Lambda runtime's event types and the shared router / delivery routine.
//! Enabled by the `lambda` feature so the CLI does not build the Lambda runtime.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use bytes::Bytes;
use lambda_http::{Body, RequestExt};
use lambda_runtime::LambdaEvent;

use crate::delivery::process_batch;
use crate::domain::DeliveryJob;
use crate::ports::ReceivedJob;
use crate::{api, App};

/// JSON logs (one object a line, with the span fields) for CloudWatch.
pub fn init_tracing() {
    lambda_http::tracing::init_default_subscriber();
}

/// An API Gateway request (REST or HTTP API) through the shared router, for the `routes` this
/// function serves.
pub async fn handle_http(
    app: &App,
    routes: api::Routes,
    request: lambda_http::Request,
) -> Result<lambda_http::Response<Body>, std::convert::Infallible> {
    // API Gateway REST puts the stage in front of the path (`/Prod/organizations/...`); the
    // router wants the resource path as clients wrote it.
    let path = request.raw_http_path().to_owned();
    let (mut parts, body) = request.into_parts();
    if parts.uri.path() != path {
        // Links the API hands out (the portal's) must carry the stage again.
        if let Some(base) = parts.uri.path().strip_suffix(path.as_str()).filter(|base| !base.is_empty()) {
            parts.extensions.insert(api::BasePath(base.to_owned()));
        }
        let path_and_query = match parts.uri.query() {
            Some(query) => format!("{path}?{query}"),
            None => path,
        };
        if let Ok(uri) = http::Uri::builder().path_and_query(path_and_query).build() {
            parts.uri = uri;
        }
    }
    let bytes = match body {
        Body::Empty => Bytes::new(),
        Body::Text(text) => Bytes::from(text),
        Body::Binary(binary) => Bytes::from(binary),
        _ => Bytes::new(),
    };
    let response = api::handle_routes(app, routes, http::Request::from_parts(parts, bytes)).await;
    Ok(response.map(|bytes| match String::from_utf8(bytes.to_vec()) {
        Ok(text) if text.is_empty() => Body::Empty,
        Ok(text) => Body::Text(text),
        Err(err) => Body::Binary(err.into_bytes()),
    }))
}

/// An SQS batch (from the delivery queue or the retry queue) through the delivery routine,
/// records concurrently. A record that is not due yet (hidden again) is reported as a batch item
/// failure so SQS keeps it; the rest, retries included (they went out as new messages), are
/// deleted by the runtime. Records that cannot be read are failures too, so the queue's redrive
/// policy moves them to the dead-letter queue. `lanes`: the retry and paced queues from the
/// settings ([`crate::config::Settings::lane_queues`]), whose records are acknowledged there.
pub async fn handle_sqs(
    app: &App,
    lanes: &crate::aws::LaneQueues,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    // (position in the batch, message id) of every record SQS must keep.
    let mut failed: Vec<(usize, String)> = Vec::new();
    let mut jobs = Vec::new();
    let mut readable = Vec::new();
    for (position, record) in event.payload.records.into_iter().enumerate() {
        let id = record.message_id.clone().unwrap_or_default();
        match received_job(record, lanes) {
            Ok(received) => {
                jobs.push(received);
                readable.push((position, id));
            }
            Err(why) => {
                tracing::error!(sqs_message_id = %id, "{why}");
                failed.push((position, id));
            }
        }
    }
    for ((position, id), result) in readable.into_iter().zip(process_batch(app, &jobs, jobs.len()).await) {
        match result {
            Ok(disposition) if disposition.is_finished() => {}
            Ok(_) => failed.push((position, id)),
            Err(err) => {
                tracing::error!(sqs_message_id = %id, error = %err, "delivery could not run");
                failed.push((position, id));
            }
        }
    }
    failed.sort();
    let mut response = SqsBatchResponse::default();
    for (_, id) in failed {
        let mut failure = aws_lambda_events::sqs::BatchItemFailure::default();
        failure.item_identifier = id;
        response.batch_item_failures.push(failure);
    }
    Ok(response)
}

/// The job of an SQS record. Its attempt number is the job's own (`ApproximateReceiveCount`
/// also counts receives that never reached this function: throttling, a crash).
fn received_job(record: SqsMessage, lanes: &crate::aws::LaneQueues) -> Result<ReceivedJob, String> {
    let body = record.body.ok_or("SQS record has no body")?;
    let job: DeliveryJob = serde_json::from_str(&body).map_err(|e| format!("SQS record is not a delivery job: {e}"))?;
    let receipt = lanes.receipt(record.event_source_arn.as_deref(), record.receipt_handle.unwrap_or_default());
    Ok(ReceivedJob::new(receipt, job))
}
