//! The AWS adapters: DynamoDB for the store, SQS for the delivery queue, SES v2 for mail.
//! Every client takes its endpoint from the standard AWS configuration (`AWS_ENDPOINT_URL`,
//! `AWS_ENDPOINT_URL_DYNAMODB`, …), so the same code runs against AWS or an emulator.

pub mod dynamodb;
mod publish_log;
mod sdk;
pub(crate) mod ses;
mod source_dead_letters;
pub(crate) mod sqs;

pub use dynamodb::DynamoStore;
pub use publish_log::QueueThenClaim;
pub use sdk::{load_config, load_config_checked, CallCounter};
pub use ses::SesMailer;
pub use source_dead_letters::{SourceDeadLetters, REJECTION_ATTRIBUTE};
pub use sqs::{LaneQueues, SqsQueue};
