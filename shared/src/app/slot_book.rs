//! The rate gate's reservations in this process, taken together: the jobs of one paced sender
//! that reach the gate while a reservation of its slots is on its way wait for it and share the
//! next one. So a batch's jobs of one subscription cost one store write between them (on AWS,
//! one write unit), not one each.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::oneshot;

use crate::ports::{Clock, Limits};
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
        store: Arc<dyn Limits>,
        clock: Arc<dyn Clock>,
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
            tokio::spawn(self.clone().serve(store, clock, key.to_owned()));
        }
        answer
            .await
            .map_err(|_| Error::internal(format!("the reservation of {key}'s slots was abandoned")))?
            .map_err(Error::internal)
    }

    /// Reserves for the jobs waiting on `key`, round after round, until none is left.
    async fn serve(self, store: Arc<dyn Limits>, clock: Arc<dyn Clock>, key: String) {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::domain::OrganizationId;
    use crate::ports::SystemClock;

    /// A pace in memory that counts its reservations, each slow enough for others to queue.
    #[derive(Default)]
    struct CountedPace {
        reservations: AtomicU32,
        next: Mutex<Option<OffsetDateTime>>,
        refused: bool,
    }

    #[async_trait]
    impl Limits for CountedPace {
        async fn reserve_slots(
            &self,
            _key: &str,
            _version: i64,
            now: OffsetDateTime,
            interval: Duration,
            count: u32,
        ) -> Result<Option<OffsetDateTime>> {
            self.reservations.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            if self.refused {
                return Err(Error::internal("the pace is out of reach"));
            }
            let mut next = self.next.lock().unwrap();
            let first = next.map_or(now, |next| next.max(now));
            *next = Some(first + interval * count);
            Ok(Some(first))
        }
        async fn claim_alert(
            &self,
            _: OrganizationId,
            _: uuid::Uuid,
            _: OffsetDateTime,
            _: time::Duration,
        ) -> Result<bool> {
            unreachable!("not the slot book's")
        }
        async fn count_requests(&self, _: &str, _: u32, _: i64, _: OffsetDateTime) -> Result<u32> {
            unreachable!("not the slot book's")
        }
        async fn use_once(&self, _: &str, _: OffsetDateTime, _: OffsetDateTime) -> Result<bool> {
            unreachable!("not the slot book's")
        }
        async fn was_used(&self, _: &str, _: OffsetDateTime) -> Result<bool> {
            unreachable!("not the slot book's")
        }
        async fn shared_secret(&self, _: &str, _: &str) -> Result<String> {
            unreachable!("not the slot book's")
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_that_ask_while_a_reservation_is_on_its_way_share_the_next_one() {
        let (book, pace) = (SlotBook::default(), Arc::new(CountedPace::default()));
        let interval = Duration::from_millis(100);
        let asked = (0..50).map(|_| {
            let (book, pace) = (book.clone(), pace.clone());
            async move { book.reserve(pace, Arc::new(SystemClock), "org/sub", 1, interval).await.unwrap().unwrap() }
        });
        let mut slots = futures::future::join_all(asked).await;
        slots.sort();
        assert!(slots.windows(2).all(|pair| pair[1] - pair[0] == interval), "one slot an interval: {slots:?}");
        let reservations = pace.reservations.load(Ordering::SeqCst);
        assert!(reservations <= 3, "50 jobs asking at once took {reservations} reservations");
        assert!(book.0.lock().unwrap().is_empty(), "nothing left waiting");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_reservation_fails_every_job_that_shared_it_and_the_next_starts_afresh() {
        let book = SlotBook::default();
        let refused = Arc::new(CountedPace { refused: true, ..CountedPace::default() });
        let asked = (0..5)
            .map(|_| book.reserve(refused.clone(), Arc::new(SystemClock), "org/sub", 1, Duration::from_millis(10)));
        for answer in futures::future::join_all(asked).await {
            assert!(answer.unwrap_err().to_string().contains("out of reach"));
        }
        let pace = Arc::new(CountedPace::default());
        assert!(book
            .reserve(pace, Arc::new(SystemClock), "org/sub", 1, Duration::from_millis(10))
            .await
            .unwrap()
            .is_some());
    }
}
