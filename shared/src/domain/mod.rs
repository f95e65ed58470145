//! The domain: who (organizations, API keys and their scopes), what (the event catalog) and
//! where (subscriptions).

pub mod api_key;
pub mod delivery_options;
pub(crate) mod event;
pub mod filter;
pub(crate) mod health;
pub mod message;
pub(crate) mod organization;
mod publish_grants;
pub mod retention;
mod retry_schedule;
pub(crate) mod subscription;
mod timestamp;
pub mod transformation;

pub use api_key::ApiKey;
pub use api_key::{NewApiKey, Scope};
pub use delivery_options::{DeliveryOptions, RateLimit};
pub use event::EventDefinition;
pub use filter::EventFilter;
pub use message::{message_uuid, AttemptRecord, DeliveryJob, Lane, Message, PublishRecord};
pub use organization::OrganizationId;
pub use organization::StoreGroup;
pub use publish_grants::PublishGrants;
pub use retry_schedule::RetrySchedule;
pub use subscription::PreviousSigningKey;
pub use subscription::{Dialect, Subscription, SubscriptionStatus};
pub use timestamp::{to_micros, utc_timestamp};
pub use transformation::Transformation;
