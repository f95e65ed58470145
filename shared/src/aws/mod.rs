//! The AWS adapters: DynamoDB for the store, SQS for the delivery queue, SES v2 for mail.
//! Every client takes its endpoint from the standard AWS configuration (`AWS_ENDPOINT_URL`,
//! `AWS_ENDPOINT_URL_DYNAMODB`, …), so the same code runs against AWS or an emulator.

pub mod dynamodb;
pub mod ses;
pub mod sqs;

pub use dynamodb::DynamoStore;
pub use ses::SesMailer;
pub use sqs::SqsQueue;

use crate::Error;

/// An SDK error with its whole chain of causes, for logs and error messages.
pub(crate) fn sdk_error(action: &str, err: impl std::error::Error) -> Error {
    Error::internal(format!("{action}: {}", aws_sdk_dynamodb::error::DisplayErrorContext(err)))
}

/// The shared SDK configuration, loaded once per process (per Lambda cold start).
pub async fn load_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// Counts the AWS API calls an app makes, by operation (`DynamoDB.Query`, `SQS.SendMessageBatch`,
/// …): the figure behind "AWS calls per published event" in the benchmark.
#[derive(Debug, Clone, Default)]
pub struct CallCounter(std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, u64>>>);

impl CallCounter {
    /// Calls so far, by operation.
    pub fn snapshot(&self) -> std::collections::BTreeMap<String, u64> {
        self.0.lock().expect("counter lock").clone()
    }

    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }

    pub fn reset(&self) {
        self.0.lock().expect("counter lock").clear();
    }
}

impl aws_sdk_dynamodb::config::Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_sdk_dynamodb::config::RuntimeComponents,
        _config: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let request = context.request();
        // JSON protocols name the operation in X-Amz-Target; SES v2 (REST) in its path.
        let operation = match request.headers().get("x-amz-target") {
            Some(target) => target.replace("DynamoDB_20120810", "DynamoDB").replace("AmazonSQS", "SQS"),
            None => format!("SESv2 {} {}", request.method(), request.uri().split('?').next().unwrap_or_default()),
        };
        *self.0.lock().expect("counter lock").entry(operation).or_default() += 1;
        Ok(())
    }
}
