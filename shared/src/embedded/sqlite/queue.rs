//! Publishing's claim-and-queue transaction and the durable delivery queue on SQLite.

use super::{corrupt, duration_nanos, from_nanos, to_nanos, SqliteBackend};
use crate::domain::{DeliveryJob, OrganizationId, PublishRecord};
use crate::ports::{PublishLog, Queue, ReceivedJob};
use crate::{Error, Result};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use std::sync::atomic::Ordering;
use std::time::Duration;
use uuid::Uuid;

#[async_trait]
impl PublishLog for SqliteBackend {
    async fn publish(
        &self,
        record: &PublishRecord,
        jobs: &[DeliveryJob],
        window: time::Duration,
    ) -> Result<Option<PublishRecord>> {
        let visible_at = self.now_nanos();
        let record = record.clone();
        // The jobs read the payload from the message's row (see `insert_jobs`).
        let jobs = jobs
            .iter()
            .map(|job| Ok(StoredJob { job: without_payload(job)?, line: line_of(job) }))
            .collect::<Result<Vec<_>>>()?;
        // One savepoint: the claim and the jobs are kept together or not at all, so a crash or
        // a full disk never leaves a claim without its jobs.
        let existing = self
            .write(move |conn| {
                if let Some(existing) = read_publish(conn, record.organization, &record.message_id)? {
                    if existing.created_at + window > record.created_at {
                        return Ok(Some(existing));
                    }
                    // Published again after the window: the row is replaced, and the earlier
                    // publish's jobs still queued keep its payload.
                    let replaced: i64 = conn
                        .prepare_cached("SELECT rowid FROM publishes WHERE org = ?1 AND message_id = ?2")?
                        .query_row(params![record.organization.to_string(), record.message_id], |r| r.get(0))?;
                    detach_jobs(conn, &[replaced])?;
                }
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO publishes (org, message_id, event_name, payload, subscriptions, created_at, expires_at, ordering_key, filtered_out) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?
                .execute(params![
                    record.organization.to_string(),
                    record.message_id,
                    record.event_name,
                    record.payload,
                    record.subscriptions,
                    to_nanos(record.created_at),
                    to_nanos(record.expires_at),
                    record.ordering_key,
                    filtered_out_text(&record.filtered_out),
                ])?;
                insert_jobs(conn, &jobs, visible_at, Some(conn.last_insert_rowid()))?;
                Ok(None)
            })
            .await?;
        if existing.is_none() {
            self.jobs_queued.notify_one();
        }
        Ok(existing)
    }
}

/// A job as stored: serialized by the caller so the writer thread only writes, with its line.
struct StoredJob {
    job: String,
    line: Option<String>,
}

/// A job as kept in a row that reads its payload from its message's row (`queue.message`):
/// without it. Received, it gets the payload back, so the delivery routine sees what it sent.
fn without_payload(job: &DeliveryJob) -> Result<String> {
    let mut job = job.clone();
    job.payload = None;
    Ok(serde_json::to_string(&job)?)
}

/// What a row keeps of a job written back (put off, retried): without its payload where the row
/// reads it from its message, whole where it keeps its own.
const WRITTEN_BACK: &str = "CASE WHEN message IS NOT NULL OR ?5 IS NULL THEN ?4 ELSE json_set(?4, '$.payload', ?5) END";

/// A job written back, as the parameters [`WRITTEN_BACK`] takes: without its payload, and the payload.
fn written_back(job: &DeliveryJob) -> Result<(String, Option<String>)> {
    Ok((without_payload(job)?, job.payload.clone()))
}

/// Before message rows go (purged, or replaced by a publish of the same id), the jobs that read
/// their payload from them take a copy of it, as they would have had from the start.
pub(super) fn detach_jobs(conn: &Connection, messages: &[i64]) -> Result<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let messages = serde_json::to_string(messages)?;
    conn.prepare_cached(&format!(
        "UPDATE queue SET message = NULL, job = COALESCE(\
           (SELECT json_set(queue.job, '$.payload', p.payload) FROM publishes p \
            WHERE p.rowid = queue.message AND length(CAST(p.payload AS BLOB)) <= {}), job) \
         WHERE message IN (SELECT value FROM json_each(?1))",
        crate::domain::message::INLINE_PAYLOAD_LIMIT
    ))?
    .execute(params![messages])?;
    Ok(())
}

fn serialize_jobs(jobs: &[DeliveryJob]) -> Result<Vec<StoredJob>> {
    jobs.iter().map(|job| Ok(StoredJob { job: serde_json::to_string(job)?, line: line_of(job) })).collect()
}

/// The queue's name for a job's line: unique across organizations and subscriptions.
fn line_of(job: &DeliveryJob) -> Option<String> {
    job.line.as_ref().map(|line| format!("{}/{}/{line}", job.organization, job.subscription_id))
}

/// The `visible_at` of a job waiting behind an earlier one of its line: never due by time, only
/// when the job ahead of it leaves the queue (acknowledged or dead-lettered).
const PARKED: i64 = i64::MAX;

/// Queues `jobs`; with `message`, they read their payload from that message row.
fn insert_jobs(conn: &Connection, jobs: &[StoredJob], visible_at: i64, message: Option<i64>) -> Result<()> {
    let mut insert =
        conn.prepare_cached("INSERT INTO queue (job, visible_at, line, message) VALUES (?1, ?2, ?3, ?4)")?;
    let mut line_busy = conn.prepare_cached("SELECT 1 FROM queue WHERE line = ?1 LIMIT 1")?;
    for StoredJob { job, line } in jobs {
        let parked = match line {
            Some(line) => line_busy.exists(params![line])?,
            None => false,
        };
        insert.execute(params![job, if parked { PARKED } else { visible_at }, line, message])?;
    }
    Ok(())
}

/// What removing a job did.
struct Removed {
    /// The job was there, held by the receipt.
    was_held: bool,
    /// The next job of its line was parked and is due now.
    unparked: bool,
}

/// Removes a job from the queue; the next job of its line, if any, is due at once.
fn remove_job(conn: &Connection, id: i64, receipt: &str, now: i64) -> Result<Removed> {
    let line: Option<Option<String>> = conn
        .prepare_cached("DELETE FROM queue WHERE id = ?1 AND receipt = ?2 RETURNING line")?
        .query_row(params![id, receipt], |r| r.get(0))
        .optional()?;
    let unparked = match &line {
        Some(Some(line)) => {
            conn.prepare_cached(
                "UPDATE queue SET visible_at = ?2 WHERE id = (SELECT MIN(id) FROM queue WHERE line = ?1) AND visible_at = ?3",
            )?
            .execute(params![line, now, PARKED])?
                > 0
        }
        _ => false,
    };
    Ok(Removed { was_held: line.is_some(), unparked })
}

pub(super) fn read_publish(conn: &Connection, org: OrganizationId, message_id: &str) -> Result<Option<PublishRecord>> {
    read_message(conn, org, message_id, true)
}

/// A published message; without `with_payload`, its payload left empty (a delivery whose job
/// carries it reads only the claim).
pub(super) fn read_message(
    conn: &Connection,
    org: OrganizationId,
    message_id: &str,
    with_payload: bool,
) -> Result<Option<PublishRecord>> {
    let row = conn
        .prepare_cached(if with_payload {
            "SELECT event_name, payload, subscriptions, created_at, expires_at, ordering_key, filtered_out FROM publishes WHERE org = ?1 AND message_id = ?2"
        } else {
            "SELECT event_name, '', subscriptions, created_at, expires_at, ordering_key, filtered_out FROM publishes WHERE org = ?1 AND message_id = ?2"
        })?
        .query_row(params![org.to_string(), message_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, u32>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<String>>(6)?,
            ))
        })
        .optional()?;
    row.map(|(event_name, payload, subscriptions, created_at, expires_at, ordering_key, filtered_out)| {
        Ok(PublishRecord {
            organization: org,
            message_id: message_id.to_owned(),
            event_name,
            payload,
            subscriptions,
            created_at: from_nanos(created_at)?,
            expires_at: from_nanos(expires_at)?,
            ordering_key,
            filtered_out: filtered_out
                .map(|text| serde_json::from_str(&text).map_err(|e| corrupt("publish", e)))
                .transpose()?
                .unwrap_or_default(),
        })
    })
    .transpose()
}

/// The subscriptions a message was filtered out of, as kept: a JSON array, NULL for none.
fn filtered_out_text(filtered_out: &[Uuid]) -> Option<String> {
    (!filtered_out.is_empty()).then(|| serde_json::to_string(filtered_out).expect("ids serialize"))
}

impl SqliteBackend {
    /// A received job waits `delay` (with `job` replacing it, if given), its receive not
    /// counted: no attempt was made. Without its receipt it is waiting, not in flight.
    ///
    /// A job put off (`job` given) after its subscription's limit changed while it was in
    /// flight (`hastened`) decided its wait under the old limit: it looks again now instead.
    async fn wait_uncounted(&self, receipt: &str, delay: Duration, job: Option<&DeliveryJob>) -> Result<()> {
        let (id, _) = parse_receipt(receipt)?;
        let now = self.now_nanos();
        let visible_at = now.saturating_add(duration_nanos(delay));
        let cut_to = job.is_some().then_some(now);
        let (job, payload) = job.map(written_back).transpose()?.unzip();
        let payload = payload.flatten();
        let receipt = receipt.to_owned();
        let visible_at = self
            .write(move |conn| {
                Ok(conn
                    .prepare_cached(&format!(
                        "UPDATE queue SET job = CASE WHEN ?4 IS NULL THEN job ELSE {WRITTEN_BACK} END, \
                         receipt = NULL, hastened = 0, \
                         visible_at = CASE WHEN hastened = 1 AND ?6 IS NOT NULL THEN MIN(?3, ?6) ELSE ?3 END, \
                         receive_count = MAX(receive_count - 1, 0) WHERE id = ?1 AND receipt = ?2 \
                         RETURNING visible_at"
                    ))?
                    .query_row(params![id, receipt, visible_at, job, payload, cut_to], |r| r.get::<_, i64>(0))
                    .optional()?
                    .unwrap_or(visible_at))
            })
            .await?;
        self.due_at(visible_at);
        Ok(())
    }

    /// A job was written to become visible at `visible_at`: the worker wakes by then. It is
    /// also woken now, to read the queue again: a read that ran beside this write may have
    /// stored a later due time without seeing the job.
    fn due_at(&self, visible_at: i64) {
        self.next_due.fetch_min(visible_at, Ordering::Relaxed);
        self.jobs_queued.notify_one();
    }
}

fn parse_receipt(receipt: &str) -> Result<(i64, i64)> {
    let (id, count) =
        receipt.split_once(':').ok_or_else(|| Error::internal(format!("malformed queue receipt {receipt:?}")))?;
    let id = id.parse().map_err(|_| Error::internal(format!("malformed queue receipt {receipt:?}")))?;
    let count = count.parse().map_err(|_| Error::internal(format!("malformed queue receipt {receipt:?}")))?;
    Ok((id, count))
}

#[async_trait]
impl Queue for SqliteBackend {
    async fn enqueue(&self, jobs: &[DeliveryJob], delay: Duration) -> Result<()> {
        let visible_at = self.now_nanos().saturating_add(duration_nanos(delay));
        let jobs = serialize_jobs(jobs)?;
        self.write(move |conn| insert_jobs(conn, &jobs, visible_at, None)).await?;
        self.due_at(visible_at);
        Ok(())
    }

    async fn wait_for_jobs(&self, timeout: Duration) {
        let until_due = self.next_due.load(Ordering::Relaxed).saturating_sub(self.now_nanos()).max(0);
        let timeout = timeout.min(Duration::from_nanos(until_due as u64));
        let _ = tokio::time::timeout(timeout, self.jobs_queued.notified()).await;
    }

    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<ReceivedJob>> {
        let now = self.now_nanos();
        let hidden_until = now.saturating_add(duration_nanos(visibility));
        self.write(move |conn| {
            let mut select = conn.prepare_cached(
                "SELECT q.id, q.job, q.receive_count, p.payload FROM queue q \
                 LEFT JOIN publishes p ON p.rowid = q.message \
                 WHERE q.visible_at <= ?1 ORDER BY q.visible_at, q.id LIMIT ?2",
            )?;
            let rows = select.query_map(params![now, max as i64], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, Option<String>>(3)?))
            })?;
            let mut update = conn.prepare_cached(
                "UPDATE queue SET visible_at = ?2, receive_count = ?3, receipt = ?4, hastened = 0 WHERE id = ?1",
            )?;
            let mut taken = Vec::new();
            for row in rows {
                let (id, job, count, message_payload) = row?;
                let count = count + 1;
                let receipt = format!("{id}:{count}");
                update.execute(params![id, hidden_until, count, receipt])?;
                // An unreadable job fails the whole read, which then takes nothing.
                let mut job: DeliveryJob = serde_json::from_str(&job).map_err(|e| corrupt("queued job", e))?;
                // Inline as it was published: up to the queue's limit (see `DeliveryJob::new`).
                if job.payload.is_none() {
                    job.payload = message_payload.filter(|p| p.len() <= crate::domain::message::INLINE_PAYLOAD_LIMIT);
                }
                taken.push(ReceivedJob::new(receipt, job));
            }
            let next_due: Option<i64> = conn
                .prepare_cached("SELECT MIN(visible_at) FROM queue WHERE visible_at > ?1 AND visible_at < ?2")?
                .query_row(params![now, PARKED], |r| r.get(0))?;
            Ok((taken, next_due.unwrap_or(PARKED)))
        })
        .await
        .map(|(taken, next_due)| {
            self.next_due.store(next_due, Ordering::Relaxed);
            taken
        })
    }

    async fn ack(&self, receipt: &str) -> Result<()> {
        self.ack_many(&[receipt.to_owned()]).await
    }

    async fn ack_many(&self, receipts: &[String]) -> Result<()> {
        let receipts = receipts.iter().map(|r| Ok((parse_receipt(r)?, r.clone()))).collect::<Result<Vec<_>>>()?;
        let now = self.now_nanos();
        let unparked = self
            .write(move |conn| {
                let mut unparked = false;
                for ((id, _), receipt) in &receipts {
                    unparked |= remove_job(conn, *id, receipt, now)?.unparked;
                }
                Ok(unparked)
            })
            .await?;
        // A job that was waiting behind one of these is due now: the worker takes it at once.
        if unparked {
            self.jobs_queued.notify_one();
        }
        Ok(())
    }

    async fn retry_later(&self, received: &ReceivedJob, delay: Duration) -> Result<()> {
        let (id, _) = parse_receipt(&received.receipt)?;
        let visible_at = self.now_nanos().saturating_add(duration_nanos(delay));
        let receipt = received.receipt.clone();
        let (job, payload) = written_back(&received.job.next_attempt(None))?;
        // The row's visibility carries the delay; the job carries the attempt it used up.
        // Without its receipt the job is waiting, not in flight (see `recover_in_flight`).
        self.write(move |conn| {
            conn.prepare_cached(&format!(
                "UPDATE queue SET job = {WRITTEN_BACK}, visible_at = ?3, receipt = NULL, hastened = 0 \
                 WHERE id = ?1 AND receipt = ?2"
            ))?
            .execute(params![id, receipt, visible_at, job, payload])?;
            Ok(())
        })
        .await?;
        self.due_at(visible_at);
        Ok(())
    }

    async fn hasten_paced(&self, org: OrganizationId, subscription: Uuid) -> Result<usize> {
        // A scan of the subscription's jobs, once a limit change: the queue keeps no column for
        // them. Waiting ones look now; those in flight may be deciding a wait under the old
        // limit, which `wait_uncounted` cuts to now.
        let now = self.now_nanos();
        let (org, subscription) = (org.to_string(), subscription.to_string());
        let hastened = self
            .write(move |conn| {
                let waiting = conn
                    .prepare_cached(
                        "UPDATE queue SET visible_at = ?1 WHERE receipt IS NULL AND visible_at > ?1 \
                         AND json_extract(job, '$.pacedAt') IS NOT NULL \
                         AND json_extract(job, '$.subscriptionId') = ?3 AND json_extract(job, '$.organization') = ?2",
                    )?
                    .execute(params![now, org, subscription])?;
                conn.prepare_cached(
                    "UPDATE queue SET hastened = 1 WHERE receipt IS NOT NULL \
                     AND json_extract(job, '$.subscriptionId') = ?2 AND json_extract(job, '$.organization') = ?1",
                )?
                .execute(params![org, subscription])?;
                Ok(waiting)
            })
            .await?;
        self.due_at(now);
        Ok(hastened)
    }

    fn lateness(&self) -> Duration {
        // The worker wakes when the earliest delayed job is due; the rest is one queue read.
        Duration::from_millis(10)
    }

    async fn defer(&self, receipt: &str, delay: Duration) -> Result<()> {
        self.wait_uncounted(receipt, delay, None).await
    }

    async fn put_off(&self, received: &ReceivedJob, job: &DeliveryJob, delay: Duration) -> Result<()> {
        // One queue here: the row waits, with the job as put off.
        self.wait_uncounted(&received.receipt, delay, Some(job)).await
    }

    async fn dead_letter(&self, receipt: &str, job: &DeliveryJob) -> Result<()> {
        let (id, _) = parse_receipt(receipt)?;
        let now = self.now_nanos();
        let receipt = receipt.to_owned();
        let job = serde_json::to_string(job)?;
        let removed = self
            .write(move |conn| {
                let removed = remove_job(conn, id, &receipt, now)?;
                // Only the current holder of the receipt may move it, so a job is never dead-lettered twice.
                if removed.was_held {
                    conn.execute("INSERT INTO dead_letters (job, dead_at) VALUES (?1, ?2)", params![job, now])?;
                }
                Ok(removed)
            })
            .await?;
        if removed.unparked {
            self.jobs_queued.notify_one();
        }
        Ok(())
    }

    async fn recover_in_flight(&self) -> Result<usize> {
        let now = self.now_nanos();
        self.write(move |conn| {
            Ok(conn.execute(
                "UPDATE queue SET visible_at = ?1, receive_count = MAX(receive_count - 1, 0), receipt = NULL, \
                 hastened = 0 WHERE receipt IS NOT NULL",
                params![now],
            )?)
        })
        .await
    }

    async fn redrive_dead_letters(&self, limit: usize) -> Result<usize> {
        let now = self.now_nanos();
        self.write(move |conn| {
            let letters: Vec<(i64, String)> = {
                let mut select = conn.prepare_cached("SELECT id, job FROM dead_letters ORDER BY id LIMIT ?1")?;
                let rows =
                    select.query_map(params![limit.min(i64::MAX as usize) as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let mut delete = conn.prepare_cached("DELETE FROM dead_letters WHERE id = ?1")?;
            for (id, job) in &letters {
                let job: DeliveryJob = serde_json::from_str(job).map_err(|e| corrupt("dead letter", e))?;
                // Replayed with a full schedule ahead of it, at the end of its line.
                insert_jobs(conn, &serialize_jobs(&[job.fresh()])?, now, None)?;
                delete.execute(params![id])?;
            }
            Ok(letters.len())
        })
        .await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeliveryJob>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached("SELECT job FROM dead_letters ORDER BY id LIMIT ?1")?;
        let rows = stmt.query_map(params![limit as i64], |r| r.get::<_, String>(0))?;
        rows.map(|job| serde_json::from_str(&job?).map_err(|e| corrupt("dead letter", e))).collect()
    }
}
