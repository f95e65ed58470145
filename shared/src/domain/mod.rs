//! The domain: who (organizations, API keys and their scopes), what (the event catalog) and
//! where (subscriptions).

pub mod api_key;
pub mod event;
pub mod message;
pub mod organization;
pub mod retention;
pub mod subscription;
mod timestamp;

pub use api_key::{ApiKey, NewApiKey, Scope};
pub use event::{EventDefinition, ScopeRequirement};
pub use message::{message_uuid, AttemptRecord, DeliveryJob, Lane, Message, PublishRecord};
pub use organization::{OrganizationId, StoreGroup};
pub use subscription::{Dialect, PreviousSigningKey, Subscription, SubscriptionStatus};
pub use timestamp::{to_micros, utc_timestamp};
