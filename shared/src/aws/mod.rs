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
