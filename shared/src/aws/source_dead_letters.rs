//! Records of a publish queue that are not publishes go to that queue's own dead-letter queue
//! at once, with the reason beside them, instead of failing `maxReceiveCount` times first.

use std::collections::HashMap;

use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName};
use aws_sdk_sqs::Client;
use tokio::sync::Mutex;

use super::sdk::sdk_error;
use crate::{Error, Result};

/// The message attribute a moved record carries its reason in.
pub const REJECTION_ATTRIBUTE: &str = "TidingsRejection";

/// Where each source queue's dead letters go, found once per queue (its redrive policy) and
/// kept for the life of the instance.
pub struct SourceDeadLetters {
    sqs: Client,
    /// Source queue ARN → its dead-letter queue's URL (none: it has no redrive policy).
    queues: Mutex<HashMap<String, Option<String>>>,
}

impl SourceDeadLetters {
    pub fn new(sdk: &aws_config::SdkConfig) -> SourceDeadLetters {
        SourceDeadLetters { sqs: Client::new(sdk), queues: Mutex::new(HashMap::new()) }
    }

    /// Sends `body` to the dead-letter queue of the queue `source_arn`, with `reason` in the
    /// [`REJECTION_ATTRIBUTE`] attribute. False when that queue has no dead-letter queue (SQS's
    /// redrive is left to move it, if it ever gets one).
    pub async fn send(&self, source_arn: &str, body: &str, reason: &str) -> Result<bool> {
        let Some(url) = self.dead_letter_queue(source_arn).await? else {
            return Ok(false);
        };
        // SQS attribute values are at most 256 KiB with the body; a reason is a sentence.
        let reason: String = reason.chars().take(1_000).collect();
        let attribute = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(reason)
            .build()
            .map_err(Error::internal)?;
        self.sqs
            .send_message()
            .queue_url(url)
            .message_body(body)
            .message_attributes(REJECTION_ATTRIBUTE, attribute)
            .send()
            .await
            .map_err(|e| sdk_error("SQS SendMessage (dead letter)", e))?;
        Ok(true)
    }

    async fn dead_letter_queue(&self, source_arn: &str) -> Result<Option<String>> {
        let mut queues = self.queues.lock().await;
        if let Some(known) = queues.get(source_arn) {
            return Ok(known.clone());
        }
        let source_url = self.url_of(source_arn).await?;
        let attributes = self
            .sqs
            .get_queue_attributes()
            .queue_url(source_url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|e| sdk_error("SQS GetQueueAttributes", e))?;
        let target = attributes
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy).cloned())
            .map(|policy| dead_letter_target(&policy))
            .transpose()?;
        let url = match target {
            Some(arn) => Some(self.url_of(&arn).await?),
            None => None,
        };
        queues.insert(source_arn.to_owned(), url.clone());
        Ok(url)
    }

    /// The URL of the queue `arn` names (`arn:aws:sqs:<region>:<account>:<name>`).
    async fn url_of(&self, arn: &str) -> Result<String> {
        let (account, name) = queue_of_arn(arn)?;
        self.sqs
            .get_queue_url()
            .queue_name(name)
            .queue_owner_aws_account_id(account)
            .send()
            .await
            .map_err(|e| sdk_error("SQS GetQueueUrl", e))?
            .queue_url
            .ok_or_else(|| Error::internal(format!("SQS has no URL for {arn}")))
    }
}

/// (account, queue name) of a queue's ARN.
fn queue_of_arn(arn: &str) -> Result<(&str, &str)> {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        ["arn", _, "sqs", _, account, name] if !name.is_empty() => Ok((account, name)),
        _ => Err(Error::internal(format!("not an SQS queue ARN: {arn}"))),
    }
}

/// The dead-letter queue's ARN in a redrive policy (`{"deadLetterTargetArn": …, "maxReceiveCount": …}`).
fn dead_letter_target(policy: &str) -> Result<String> {
    let policy: serde_json::Value = serde_json::from_str(policy).map_err(Error::internal)?;
    policy["deadLetterTargetArn"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::internal(format!("a redrive policy without deadLetterTargetArn: {policy}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_arn_names_its_account_and_queue() {
        assert_eq!(queue_of_arn("arn:aws:sqs:eu-west-1:123456789012:orders").unwrap(), ("123456789012", "orders"));
        assert!(queue_of_arn("arn:aws:sns:eu-west-1:123456789012:orders").is_err());
        assert!(queue_of_arn("orders").is_err());
    }

    #[test]
    fn a_redrive_policy_names_its_dead_letter_queue() {
        let policy = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:1:dlq","maxReceiveCount":5}"#;
        assert_eq!(dead_letter_target(policy).unwrap(), "arn:aws:sqs:us-east-1:1:dlq");
        assert!(dead_letter_target(r#"{"maxReceiveCount":5}"#).is_err());
        assert!(dead_letter_target("not json").is_err());
    }
}
