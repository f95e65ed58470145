//! Glue between the Lambda runtime's event types and the shared router / delivery routine.
//! Enabled by the `lambda` feature so the CLI does not build the Lambda runtime.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use bytes::Bytes;
use lambda_http::{Body, RequestExt};
use lambda_runtime::LambdaEvent;

use crate::aws::SourceDeadLetters;
use crate::delivery::process_batch;
use crate::domain::DeliveryJob;
use crate::domain::PublishGrants;
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
/// records concurrently. Every record the routine finished with is deleted by the runtime:
/// retries and put-offs (a wait not yet over included) went out as new messages, so no record
/// is ever kept in flight to wait. Records that cannot be read, or whose delivery could not
/// run, are batch item failures, so SQS offers them again and its redrive policy moves them to
/// the dead-letter queue after `maxReceiveCount`. `lanes`: the retry and paced queues from the
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
    let mut offered_before = Vec::new();
    for (position, record) in event.payload.records.into_iter().enumerate() {
        let id = record.message_id.clone().unwrap_or_default();
        let receives: u32 = record.attributes.get("ApproximateReceiveCount").and_then(|n| n.parse().ok()).unwrap_or(1);
        match received_job(record, lanes) {
            Ok(received) => {
                if receives > 1 {
                    offered_before.push(received.job.clone());
                }
                jobs.push(received);
                readable.push((position, id));
            }
            Err(why) => {
                tracing::error!(sqs_message_id = %id, "{why}");
                failed.push((position, id));
            }
        }
    }
    keep_messages_for_redrive(app, &offered_before).await;
    for ((position, id), result) in readable.into_iter().zip(process_batch(app, &jobs, jobs.len()).await) {
        match result {
            Ok(_) => {}
            Err(err) => {
                tracing::error!(sqs_message_id = %id, error = %err, "delivery could not run");
                failed.push((position, id));
            }
        }
    }
    failed.sort();
    Ok(batch_item_failures(failed.into_iter().map(|(_, id)| id)))
}

/// The answer to an SQS batch: the records SQS must keep and offer again, by message id; every
/// other record is deleted.
fn batch_item_failures(ids: impl IntoIterator<Item = String>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for id in ids {
        let mut failure = aws_lambda_events::sqs::BatchItemFailure::default();
        failure.item_identifier = id;
        response.batch_item_failures.push(failure);
    }
    response
}

/// A record SQS offers again (its invocation crashed, timed out or was throttled) may end in the
/// dead-letter queue by SQS's redrive, not by the delivery routine: its message is kept as long
/// as a dead letter is, as the routine's own dead-lettering keeps it, so a replay after the
/// message's usual retention still finds its claim and payload. Only records offered before pay
/// the write.
async fn keep_messages_for_redrive(app: &App, jobs: &[DeliveryJob]) {
    let until = app.clock.now() + crate::domain::retention::DEAD_LETTER_RETENTION;
    for job in jobs {
        if let Err(err) = app.store.retain_message(job.organization, &job.message_id, until).await {
            tracing::error!(message_id = %job.message_id, error = %err, "cannot keep the message of a record SQS offered again");
        }
    }
}

/// An invocation of the delivery function: an SQS batch of one of its lanes through
/// [`handle_sqs`], or the line sweep's schedule (an EventBridge scheduled event), which moves on
/// every ordered line whose head lost its job ([`crate::ports::Queue::sweep_lines`]). Any other
/// event is refused: only the template's event sources and schedule invoke this function.
pub async fn handle_delivery(
    app: &App,
    lanes: &crate::aws::LaneQueues,
    event: LambdaEvent<serde_json::Value>,
) -> Result<serde_json::Value, lambda_runtime::Error> {
    let LambdaEvent { payload, context } = event;
    if payload.get("Records").is_some() {
        let batch: SqsEvent = serde_json::from_value(payload)?;
        return Ok(serde_json::to_value(handle_sqs(app, lanes, LambdaEvent::new(batch, context)).await?)?);
    }
    let scheduled = payload["source"] == "aws.events" && payload["detail-type"] == "Scheduled Event";
    if !scheduled {
        return Err("the delivery function takes SQS batches and the line sweep's schedule only".into());
    }
    let stalled = app.queue.sweep_lines().await?;
    crate::metrics::stalled_lines(stalled);
    if stalled > 0 {
        tracing::warn!(stalled, "ordered lines had stopped moving and were moved on");
    }
    Ok(serde_json::json!({ "stalledLines": stalled }))
}

/// The job of an SQS record. Its attempt number is the job's own (`ApproximateReceiveCount`
/// also counts receives that never reached this function: throttling, a crash).
fn received_job(record: SqsMessage, lanes: &crate::aws::LaneQueues) -> Result<ReceivedJob, String> {
    let body = record.body.ok_or("SQS record has no body")?;
    let job: DeliveryJob = serde_json::from_str(&body).map_err(|e| format!("SQS record is not a delivery job: {e}"))?;
    let receipt = lanes.receipt(record.event_source_arn.as_deref(), record.receipt_handle.unwrap_or_default());
    Ok(ReceivedJob::new(receipt, job))
}

/// An invocation of the ingest function: an API Gateway request (REST or HTTP API) through the
/// router's ingest routes, or a batch of records from a publish queue (its own `PublishQueue`,
/// which an EventBridge rule may feed, or a team's queue) through [`handle_publish_queue`].
pub async fn handle_ingest(
    app: &App,
    sources: &PublishSources,
    event: LambdaEvent<Box<serde_json::value::RawValue>>,
) -> Result<serde_json::Value, lambda_runtime::Error> {
    use lambda_runtime::Service;
    let LambdaEvent { payload, context } = event;
    // Only SQS events carry `Records`; API Gateway's never do.
    if let Ok(batch) = serde_json::from_str::<SqsEvent>(payload.get()) {
        let answer = handle_publish_queue(app, sources, batch).await;
        return Ok(serde_json::to_value(answer)?);
    }
    let request: lambda_http::request::LambdaRequest = serde_json::from_str(payload.get())?;
    let mut adapter = lambda_http::Adapter::from(lambda_runtime::service_fn(|request: lambda_http::Request| {
        handle_http(app, api::Routes::Ingest, request)
    }));
    let response = adapter.call(LambdaEvent { payload: request, context }).await?;
    Ok(serde_json::to_value(response)?)
}

/// The queues the ingest function reads publish records from: which organizations each may
/// publish for, and where each one's refused records go.
pub struct PublishSources {
    pub grants: PublishGrants,
    pub dead_letters: SourceDeadLetters,
}

/// A batch from a publish queue: each record one publish (see `ingest::record::source_record`),
/// published together ([`crate::ingest::publish_many`]). A record that can never be published
/// (not a publish record, an unknown event, an organization outside its queue's grant or
/// unknown to Tidings, a payload its event refuses or over the size limit) is logged with its
/// reason and moved to the queue's dead-letter queue at once; a record that failed for a
/// passing cause (DynamoDB or SQS unavailable) is reported as a batch item failure, so SQS
/// offers it again and, after `maxReceiveCount`, moves it there itself. A record without a
/// messageId publishes under its SQS message id, so receiving it twice publishes it once.
pub async fn handle_publish_queue(app: &App, sources: &PublishSources, batch: SqsEvent) -> SqsBatchResponse {
    let mut requests = Vec::new();
    // (record, position) of each request, and of each record refused (with its reason).
    let mut requested = Vec::new();
    let mut refused: Vec<(&SqsMessage, String)> = Vec::new();
    for record in &batch.records {
        let id = record.message_id.as_deref().unwrap_or_default();
        let body = record.body.as_deref().unwrap_or_default();
        let source = record.event_source_arn.as_deref().unwrap_or_default();
        let granted = crate::ingest::record::source_record(body.as_bytes(), Some(id))
            .and_then(|request| sources.grants.check(source, request.org).map(|()| request));
        match granted {
            Ok(request) => {
                requests.push(request);
                requested.push(record);
            }
            Err(err) => refused.push((record, reason(&err))),
        }
    }
    let mut failed: Vec<&SqsMessage> = Vec::new();
    let mut message_ids = Vec::new();
    let mut repeated = 0;
    for (record, outcome) in requested.into_iter().zip(crate::ingest::publish_many(app, requests).await) {
        match outcome {
            Ok(published) => {
                repeated += usize::from(published.repeated);
                message_ids.push(published.message_id);
            }
            Err(err) if err.is_transient() => {
                tracing::error!(sqs_message_id = record.message_id.as_deref().unwrap_or_default(), error = %err, "publish failed; SQS offers the record again");
                failed.push(record);
            }
            Err(err) => refused.push((record, reason(&err))),
        }
    }
    for (record, reason) in refused {
        let id = record.message_id.as_deref().unwrap_or_default();
        let source = record.event_source_arn.as_deref().unwrap_or_default();
        let body = record.body.as_deref().unwrap_or_default();
        match sources.dead_letters.send(source, body, &reason).await {
            Ok(true) => {
                tracing::error!(sqs_message_id = id, source, reason, "not a publish: moved to the dead-letter queue");
            }
            Ok(false) => {
                tracing::error!(
                    sqs_message_id = id,
                    source,
                    reason,
                    "not a publish, and its queue has no dead-letter queue: SQS keeps it until its retention ends"
                );
                failed.push(record);
            }
            Err(err) => {
                tracing::error!(sqs_message_id = id, source, reason, error = %err, "not a publish; moving it to the dead-letter queue failed, so SQS's redrive will");
                failed.push(record);
            }
        }
    }
    if !message_ids.is_empty() {
        // One line a batch (not one a message), naming every message id for a search by id.
        tracing::info!(
            published = message_ids.len(),
            repeated,
            message_ids = message_ids.join(" "),
            "published from a queue"
        );
    }
    batch_item_failures(failed.into_iter().map(|record| record.message_id.clone().unwrap_or_default()))
}

/// A refused record's reason, naming the field.
fn reason(err: &crate::Error) -> String {
    match err.field() {
        Some(field) => format!("{field}: {err}"),
        None => err.to_string(),
    }
}
