//! The SDK's configuration, its errors as ours, and a counter of the calls made.

use aws_sdk_dynamodb::error::ProvideErrorMetadata;

use crate::{Error, Result};

/// The error codes with which DynamoDB and SQS refuse a request as invalid (an item over 400 KB,
/// a key too long, a message over the queue's size): sent again, it fails again.
const REFUSALS: &[&str] = &[
    "ValidationException",
    "SerializationException",
    "InvalidParameterValue",
    "InvalidParameterCombination",
    "InvalidMessageContents",
    "BatchRequestTooLong",
];

/// An SDK error with its whole chain of causes on one line, for logs and error messages (the
/// SDK's own context printer appends a debug dump of the raw response, hundreds of characters
/// that Logs Insights cannot filter on). A request AWS refused as invalid is
/// [`Error::Refused`], never retried; anything else may pass ([`Error::Internal`]).
pub(crate) fn sdk_error(action: &str, err: impl std::error::Error + ProvideErrorMetadata) -> Error {
    let refused = err.code().is_some_and(|code| REFUSALS.iter().any(|r| code.ends_with(r)));
    let mut text = format!("{action}: {err}");
    let mut last = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !last.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        last = cause_text;
        source = cause.source();
    }
    if refused {
        Error::Refused(text)
    } else {
        Error::internal(text)
    }
}

/// The shared SDK configuration, loaded once per process (per Lambda cold start).
pub async fn load_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// As [`load_config`], for a person at a terminal (`tidings … --table`): a missing region or
/// missing credentials is one line saying what to set, before any call is made.
pub async fn load_config_checked() -> Result<aws_config::SdkConfig> {
    use aws_sdk_dynamodb::config::ProvideCredentials;
    let sdk = load_config().await;
    if sdk.region().is_none() {
        return Err(Error::Unavailable("no AWS region: set AWS_REGION (or use a profile that names one)".into()));
    }
    let found = match sdk.credentials_provider() {
        Some(provider) => provider.provide_credentials().await.is_ok(),
        None => false,
    };
    if !found {
        return Err(Error::Unavailable(
            "no AWS credentials found (environment, profiles, instance role): set AWS_PROFILE, or \
             AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                .into(),
        ));
    }
    Ok(sdk)
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

#[cfg(test)]
mod tests {
    use super::*;

    use aws_sdk_dynamodb::error::ErrorMetadata;

    /// An error, its cause, and the code AWS answered with.
    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>, ErrorMetadata);

    impl Layer {
        fn new(text: &'static str, cause: Option<Layer>) -> Layer {
            Layer(text, cause.map(Box::new), ErrorMetadata::builder().build())
        }

        fn coded(text: &'static str, code: &str) -> Layer {
            Layer(text, None, ErrorMetadata::builder().code(code).build())
        }
    }

    impl ProvideErrorMetadata for Layer {
        fn meta(&self) -> &ErrorMetadata {
            &self.2
        }
    }

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn an_sdk_error_reads_as_its_chain_of_causes_on_one_line_without_debug_dumps() {
        let err = Layer::new(
            "service error",
            Some(Layer::new(
                "ResourceNotFoundException: Requested resource not found",
                Some(Layer::new("Requested resource not found", None)),
            )),
        );
        let text = sdk_error("DynamoDB GetItem", err).to_string();
        assert!(
            text.ends_with("DynamoDB GetItem: service error: ResourceNotFoundException: Requested resource not found"),
            "{text}"
        );
        assert!(!text.contains('{') && !text.contains('\n'), "{text}");
    }

    #[test]
    fn a_request_aws_refuses_as_invalid_is_permanent_and_anything_else_may_pass() {
        for code in ["ValidationException", "InvalidParameterValue", "AWS.SimpleQueueService.BatchRequestTooLong"] {
            let err = sdk_error("DynamoDB PutItem", Layer::coded("refused", code));
            assert!(matches!(err, Error::Refused(_)) && !err.is_transient(), "{code}: {err:?}");
        }
        for code in ["ProvisionedThroughputExceededException", "InternalServerError", "ThrottlingException"] {
            let err = sdk_error("DynamoDB PutItem", Layer::coded("busy", code));
            assert!(err.is_transient(), "{code}: {err:?}");
        }
        assert!(sdk_error("SQS SendMessage", Layer::new("dispatch failure", None)).is_transient());
    }
}
