//! Glue between the Lambda runtime's event types and the shared router / delivery routine.
//! Enabled by the `lambda` feature so the CLI does not build the Lambda runtime.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use bytes::Bytes;
use lambda_http::{Body, RequestExt};
use lambda_runtime::LambdaEvent;

use crate::delivery::{deliver_job, JobOutcome};
use crate::ports::DeliveryJob;
use crate::{api, App};

/// JSON logs (one object a line, with the span fields) for CloudWatch.
pub fn init_tracing() {
    lambda_http::tracing::init_default_subscriber();
}

/// An API Gateway request (REST or HTTP API) through the shared router.
pub async fn handle_http(
    app: &App,
    request: lambda_http::Request,
) -> Result<lambda_http::Response<Body>, std::convert::Infallible> {
    // API Gateway REST puts the stage in front of the path (`/Prod/organizations/...`); the
    // router wants the resource path as clients wrote it.
    let path = request.raw_http_path().to_owned();
    let (mut parts, body) = request.into_parts();
    if parts.uri.path() != path {
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
    let response = api::handle(app, http::Request::from_parts(parts, bytes)).await;
    Ok(response.map(|bytes| match String::from_utf8(bytes.to_vec()) {
        Ok(text) if text.is_empty() => Body::Empty,
        Ok(text) => Body::Text(text),
        Err(err) => Body::Binary(err.into_bytes()),
    }))
}

/// An SQS batch through the delivery routine. Records that were not delivered are reported
/// as batch item failures, so SQS makes them visible again (and, after the queue's
/// maxReceiveCount, moves them to the dead-letter queue) while the rest are deleted.
pub async fn handle_sqs(app: &App, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    let mut response = SqsBatchResponse::default();
    for record in event.payload.records {
        let id = record.message_id.clone().unwrap_or_default();
        let delivered = match record.body.as_deref().map(serde_json::from_str::<DeliveryJob>) {
            Some(Ok(job)) => match deliver_job(app, &job).await {
                Ok(JobOutcome::Delivered(_) | JobOutcome::Skipped(_)) => true,
                Ok(JobOutcome::Failed(_)) => false,
                Err(err) => {
                    tracing::error!(message = %id, error = %err, "delivery could not run");
                    false
                }
            },
            Some(Err(err)) => {
                tracing::error!(message = %id, error = %err, "SQS record is not a delivery job");
                false
            }
            None => {
                tracing::error!(message = %id, "SQS record has no body");
                false
            }
        };
        if !delivered {
            let mut failure = aws_lambda_events::sqs::BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
    }
    Ok(response)
}
