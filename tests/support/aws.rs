//! Resources in the AWS-API emulator (moto server) that `scripts/test.sh` starts: a table, a
//! delivery queue with its dead-letter queue and a verified SES sender, shaped as
//! `infra/template.yaml` shapes them, with unique names so tests run in parallel.

use std::sync::Arc;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use tidings::config::AwsSettings;
use tidings::destination::DestinationPolicy;
use tidings::App;

/// The emulator's address; `scripts/test.sh` exports it.
pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| {
        panic!("AWS_ENDPOINT_URL is not set: the AWS adapter tests need the emulator that ./scripts/test.sh starts")
    })
}

/// The single-item DynamoDB writes the emulator counted (refused conditions included), summed
/// over the partition keys that start with `prefix`.
pub async fn item_writes(prefix: &str) -> u64 {
    let url = format!("{}/tidings-emulator/item-writes?prefix={}", endpoint(), prefix.replace('#', "%23"));
    let counts: std::collections::HashMap<String, u64> = reqwest::get(url).await.unwrap().json().await.unwrap();
    counts.values().sum()
}

pub const SENDER: &str = "alerts@tidings.example.com";

pub struct AwsFixture {
    pub sdk: aws_config::SdkConfig,
    pub settings: AwsSettings,
}

impl AwsFixture {
    /// Fresh resources; `max_receive_count` is the main queue's redrive threshold.
    pub async fn new(max_receive_count: u32) -> AwsFixture {
        endpoint();
        let sdk = tidings::aws::load_config().await;
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let table = format!("tidings-{suffix}");
        create_table(&aws_sdk_dynamodb::Client::new(&sdk), &table).await;

        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let dlq_url =
            sqs.create_queue().queue_name(format!("tidings-dlq-{suffix}")).send().await.unwrap().queue_url.unwrap();
        let dlq_arn = queue_arn(&sqs, &dlq_url).await;
        // The delivery queue and the retry queue (the slow lane), shaped alike.
        let redriven_queue = |name: String| {
            let sqs = sqs.clone();
            let redrive = redrive_for(&dlq_arn, max_receive_count);
            async move {
                sqs.create_queue()
                    .queue_name(name)
                    .attributes(QueueAttributeName::RedrivePolicy, redrive)
                    .attributes(QueueAttributeName::VisibilityTimeout, "60")
                    .send()
                    .await
                    .unwrap()
                    .queue_url
                    .unwrap()
            }
        };
        let queue_url = redriven_queue(format!("tidings-deliveries-{suffix}")).await;
        let retry_url = redriven_queue(format!("tidings-retries-{suffix}")).await;
        let paced_url = redriven_queue(format!("tidings-paced-{suffix}")).await;

        let ses = aws_sdk_sesv2::Client::new(&sdk);
        // Idempotent in the emulator: every fixture verifies the same sender.
        let _ = ses.create_email_identity().email_identity(SENDER).send().await;

        AwsFixture {
            sdk,
            settings: AwsSettings {
                table,
                queue_url,
                retry_queue_url: Some(retry_url),
                paced_queue_url: Some(paced_url),
                dead_letter_queue_url: dlq_url,
                sender: SENDER.into(),
                max_delay: None,
                line_lease: None,
                publish_grants: Default::default(),
            },
        }
    }

    pub fn app(&self) -> App {
        App::aws(&self.sdk, &self.settings, DestinationPolicy::LOCAL).expect("AWS app")
    }

    pub fn store(&self) -> Arc<tidings::aws::DynamoStore> {
        Arc::new(tidings::aws::DynamoStore::new(aws_sdk_dynamodb::Client::new(&self.sdk), &self.settings.table))
    }

    pub fn queue(&self) -> tidings::aws::SqsQueue {
        tidings::aws::SqsQueue::new(
            aws_sdk_sqs::Client::new(&self.sdk),
            &self.settings.queue_url,
            &self.settings.dead_letter_queue_url,
        )
        .with_retry_queue(self.retry_url())
        .with_paced_queue(self.settings.paced_queue_url.as_deref().expect("the fixture has a paced queue"))
        .with_lines(self.store())
    }

    pub fn retry_url(&self) -> &str {
        self.settings.retry_queue_url.as_deref().expect("the fixture has a retry queue")
    }

    /// The slow and paced lanes' queues, as the delivery function reads them from its settings.
    pub fn lane_queues(&self) -> tidings::aws::LaneQueues {
        tidings::aws::LaneQueues {
            retry_url: self.settings.retry_queue_url.clone(),
            paced_url: self.settings.paced_queue_url.clone(),
        }
    }

    /// Receives from the delivery queue and shapes the messages as the Lambda SQS event source
    /// hands them to the function (real receipt handles and receive counts).
    pub async fn sqs_event(&self) -> aws_lambda_events::sqs::SqsEvent {
        self.sqs_event_from(&self.settings.queue_url).await
    }

    /// As [`AwsFixture::sqs_event`], from the retry queue.
    pub async fn retry_event(&self) -> aws_lambda_events::sqs::SqsEvent {
        self.sqs_event_from(self.retry_url()).await
    }

    /// What the SQS event source of `queue_url` does once: receive a batch, invoke the delivery
    /// handler, delete the records it did not report as failures. Returns how many records ran.
    pub async fn run_event_source(&self, app: &App, queue_url: &str) -> usize {
        let event = self.sqs_event_from(queue_url).await;
        let records: Vec<(String, String)> = event
            .records
            .iter()
            .map(|r| (r.message_id.clone().unwrap_or_default(), r.receipt_handle.clone().unwrap_or_default()))
            .collect();
        if records.is_empty() {
            return 0;
        }
        let response = tidings::lambda::handle_sqs(
            app,
            &self.lane_queues(),
            lambda_runtime::LambdaEvent::new(event, lambda_runtime::Context::default()),
        )
        .await
        .unwrap();
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        for (id, handle) in &records {
            if !response.batch_item_failures.iter().any(|f| &f.item_identifier == id) {
                sqs.delete_message().queue_url(queue_url).receipt_handle(handle).send().await.unwrap();
            }
        }
        records.len()
    }

    async fn sqs_event_from(&self, queue_url: &str) -> aws_lambda_events::sqs::SqsEvent {
        let queue_name = queue_url.rsplit('/').next().unwrap_or_default().to_owned();
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        let records: Vec<serde_json::Value> = out
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                let attributes: serde_json::Map<String, serde_json::Value> = m
                    .attributes
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k.as_str().to_owned(), serde_json::Value::String(v)))
                    .collect();
                serde_json::json!({
                    "messageId": m.message_id, "receiptHandle": m.receipt_handle, "body": m.body,
                    "attributes": attributes, "messageAttributes": {}, "md5OfBody": m.md5_of_body,
                    "eventSource": "aws:sqs", "eventSourceARN": format!("arn:aws:sqs:us-east-1:123456789012:{queue_name}"),
                    "awsRegion": "us-east-1"
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
    }

    /// Messages the emulator says SES sent, as JSON.
    pub async fn sent_emails(&self) -> Vec<serde_json::Value> {
        let data: serde_json::Value =
            reqwest::get(format!("{}/moto-api/data.json", endpoint())).await.unwrap().json().await.unwrap();
        data["ses"]["Message"].as_array().cloned().unwrap_or_default()
    }
}

fn redrive_for(dlq_arn: &str, max_receive_count: u32) -> String {
    format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{max_receive_count}"}}"#)
}

fn attr(name: &str) -> AttributeDefinition {
    AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build().unwrap()
}

fn key(name: &str, kind: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder().attribute_name(name).key_type(kind).build().unwrap()
}

/// The table of `infra/template.yaml`: PK/SK, GSI1 (GSI1PK/GSI1SK, all attributes), TTL on
/// `expires_at`.
async fn create_table(client: &aws_sdk_dynamodb::Client, table: &str) {
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("PK"))
        .attribute_definitions(attr("SK"))
        .attribute_definitions(attr("GSI1PK"))
        .attribute_definitions(attr("GSI1SK"))
        .key_schema(key("PK", KeyType::Hash))
        .key_schema(key("SK", KeyType::Range))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(tidings::aws::dynamodb::GSI1)
                .key_schema(key("GSI1PK", KeyType::Hash))
                .key_schema(key("GSI1SK", KeyType::Range))
                .projection(Projection::builder().projection_type(ProjectionType::All).build())
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder().attribute_name("expires_at").enabled(true).build().unwrap(),
        )
        .send()
        .await
        .unwrap();
}

/// The ARN of the queue at `url` (what event sources and redrive policies name it by).
pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone()
}

/// Every message of a queue (received until it stays empty, each deleted), with the reason
/// Tidings gave it (`TidingsRejection`; empty when none): what a dead-letter queue holds.
pub async fn drain(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Vec<(String, String)> {
    let mut all = Vec::new();
    let mut empty_receives = 0;
    while empty_receives < 2 {
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap();
        let messages = out.messages.unwrap_or_default();
        empty_receives = if messages.is_empty() { empty_receives + 1 } else { 0 };
        for m in messages {
            let reason = m
                .message_attributes()
                .and_then(|a| a.get(tidings::aws::REJECTION_ATTRIBUTE))
                .and_then(|v| v.string_value())
                .unwrap_or_default()
                .to_owned();
            all.push((m.body().unwrap_or_default().to_owned(), reason));
            sqs.delete_message().queue_url(queue_url).receipt_handle(m.receipt_handle().unwrap()).send().await.unwrap();
        }
    }
    all
}

/// Takes up to 10 messages of a queue with every system attribute, hiding them for a minute, so
/// repeated calls read each message once.
pub async fn take_messages(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Vec<aws_sdk_sqs::types::Message> {
    let out = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .visibility_timeout(60)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap();
    out.messages.unwrap_or_default()
}

/// A taken message's `ApproximateReceiveCount` (this receive included).
pub fn receive_count(message: &aws_sdk_sqs::types::Message) -> u32 {
    let attributes = message.attributes.as_ref();
    let count =
        attributes.and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount));
    count.and_then(|c| c.parse().ok()).unwrap_or(0)
}
