//! The rate gate's reservations in this process, taken together: the jobs of one paced sender
//! that reach the gate while a reservation of its slots is on its way wait for it and share the
//! next one. So a batch's jobs of one subscription cost one store write between them (on AWS,
//! one write unit), not one each.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::oneshot;

use crate::ports::{Clock, Store};
use crate::{Error, Result};

/// A job waiting for its slot: the pace it books on (limit version, interval), and where its
/// slot goes (`None`: the pace is on a newer limit than the job read).
struct Waiter {
    pace: (i64, Duration),
    slot: oneshot::Sender<std::result::Result<Option<OffsetDateTime>, String>>,
}

/// The senders with a reservation on its way, and the jobs waiting for the next one.
#[derive(Default, Clone)]
pub struct SlotBook(Arc<Mutex<HashMap<String, Vec<Waiter>>>>);

impl SlotBook {
    /// Reserves one slot of the paced sender `key` (see `Limits::reserve_slots`), together
    /// with every other job of this process that asks for one of `key`'s slots meanwhile.
    pub async fn reserve(
        &self,
        store: &Arc<dyn Store>,
        clock: &Arc<dyn Clock>,
        key: &str,
        version: i64,
        interval: Duration,
    ) -> Result<Option<OffsetDateTime>> {
        let (slot, answer) = oneshot::channel();
        let waiter = Waiter { pace: (version, interval), slot };
        let first = {
            let mut book = self.0.lock().expect("slot book lock");
            match book.get_mut(key) {
                Some(waiting) => {
                    waiting.push(waiter);
                    false
                }
                None => {
                    book.insert(key.to_owned(), vec![waiter]);
                    true
                }
            }
        };
        if first {
            // Its own task: the jobs that find a reservation on its way are served by it, and
            // none of them is kept from sending while later ones keep arriving.
            tokio::spawn(self.clone().serve(store.clone(), clock.clone(), key.to_owned()));
        }
        answer
            .await
            .map_err(|_| Error::internal(format!("the reservation of {key}'s slots was abandoned")))?
            .map_err(Error::internal)
    }

    /// Reserves for the jobs waiting on `key`, round after round, until none is left.
    async fn serve(self, store: Arc<dyn Store>, clock: Arc<dyn Clock>, key: String) {
        loop {
            let round: Vec<Waiter> = {
                let mut book = self.0.lock().expect("slot book lock");
                let Some(waiting) = book.get_mut(&key) else { return };
                let Some(pace) = waiting.first().map(|w| w.pace) else {
                    book.remove(&key);
                    return;
                };
                // One pace a round: jobs that read a newer limit meanwhile wait for the next.
                let (round, rest) = std::mem::take(waiting).into_iter().partition(|w| w.pace == pace);
                *waiting = rest;
                round
            };
            let (version, interval) = round[0].pace;
            let count = u32::try_from(round.len()).unwrap_or(u32::MAX);
            let reserved = store.reserve_slots(&key, version, clock.now(), interval, count).await;
            for (nth, waiter) in round.into_iter().enumerate() {
                let slot = match &reserved {
                    Ok(first) => Ok(first.map(|first| first + interval * nth as u32)),
                    Err(err) => Err(err.to_string()),
                };
                // A job that stopped waiting has its slot wasted, as a late one does.
                let _ = waiter.slot.send(slot);
            }
        }
    }
}
