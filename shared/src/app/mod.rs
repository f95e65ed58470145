//! The application: the ports plus the settings and the state every handler of a process
//! shares. Built once per process (per Lambda cold start: `assemble.rs`), shared by every
//! request.

use std::sync::Arc;

use crate::config::DeliverySettings;
use crate::destination::{self, DestinationPolicy};
use crate::ports::{Clock, Mailer, PublishLog, Queue, Store};

mod assemble;
mod filters;
mod key_cache;
mod probes;
mod slot_book;
mod transformations;

pub use filters::{Filters, OrganizationFilters};
pub use key_cache::KeyCache;
pub use probes::{Probe, Probes};
pub use slot_book::SlotBook;
pub use transformations::Transformations;

/// Largest request body accepted; larger ones get 413.
pub(crate) const MAX_BODY_BYTES: usize = 256 * 1024;

#[derive(Clone)]
pub struct App {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    /// Idempotency claims and delivery jobs, recorded together.
    pub publish_log: Arc<dyn PublishLog>,
    pub mailer: Arc<dyn Mailer>,
    pub clock: Arc<dyn Clock>,
    pub destinations: DestinationPolicy,
    /// The one HTTP client (keep-alive pool) for destination checks and deliveries.
    pub http: destination::HttpClient,
    pub delivery: DeliverySettings,
    /// Failing endpoints being probed (one request at a time each).
    pub delivery_probes: Probes,
    /// Rate-limit slots being reserved, shared by the jobs that ask meanwhile.
    pub slot_book: SlotBook,
    /// Each organization's subscription filters, compiled together.
    pub filters: Filters,
    /// Each subscription's transformation, compiled.
    pub transformations: Transformations,
    /// API keys read recently (on Lambda; `tidings serve` reads every time).
    pub keys: Arc<KeyCache>,
    /// Publishes one organization may make per calendar minute; 0 = no limit.
    pub publishes_per_minute: u32,
    /// The portal's signing secret, read from the store once (`api::session::secret`).
    pub portal_secret: Arc<tokio::sync::OnceCell<String>>,
}
