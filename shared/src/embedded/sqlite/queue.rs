//! Publishing's claim-and-queue transaction and the durable delivery queue on SQLite.

use super::*;

#[async_trait]
impl PublishLog for SqliteBackend {
    async fn publish(
        &self,
        record: &PublishRecord,
        jobs: &[DeliveryJob],
        window: time::Duration,
    ) -> Result<Option<PublishRecord>> {
        let visible_at = self.now_nanos();
        let mut conn = self.conn();
        // One transaction: the claim and the jobs commit together or not at all, so a crash or a
        // full disk never leaves a claim without its jobs.
        let tx = conn.transaction()?;
        if let Some(existing) = read_publish(&tx, record.organization, &record.message_id)? {
            if existing.created_at + window > record.created_at {
                return Ok(Some(existing));
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO publishes (org, message_id, event_name, payload, subscriptions, created_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                record.organization.to_string(),
                record.message_id,
                record.event_name,
                record.payload,
                record.subscriptions,
                to_nanos(record.created_at),
                to_nanos(record.expires_at)
            ],
        )?;
        insert_jobs(&tx, jobs, visible_at)?;
        tx.commit()?;
        self.jobs_queued.notify_one();
        Ok(None)
    }
}

fn insert_jobs(tx: &rusqlite::Transaction<'_>, jobs: &[DeliveryJob], visible_at: i64) -> Result<()> {
    let mut insert = tx.prepare_cached("INSERT INTO queue (job, visible_at) VALUES (?1, ?2)")?;
    for job in jobs {
        insert.execute(params![serde_json::to_string(job)?, visible_at])?;
    }
    Ok(())
}

pub(super) fn read_publish(conn: &Connection, org: OrganizationId, message_id: &str) -> Result<Option<PublishRecord>> {
    let row = conn
        .query_row(
            "SELECT event_name, payload, subscriptions, created_at, expires_at FROM publishes WHERE org = ?1 AND message_id = ?2",
            params![org.to_string(), message_id],
            |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, u32>(2)?, r.get::<_, i64>(3)?, r.get::<_, i64>(4)?))
            },
        )
        .optional()?;
    row.map(|(event_name, payload, subscriptions, created_at, expires_at)| {
        Ok(PublishRecord {
            organization: org,
            message_id: message_id.to_owned(),
            event_name,
            payload,
            subscriptions,
            created_at: from_nanos(created_at)?,
            expires_at: from_nanos(expires_at)?,
        })
    })
    .transpose()
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
        let mut conn = self.conn();
        // One transaction per batch: one fsync however many subscriptions matched.
        let tx = conn.transaction()?;
        insert_jobs(&tx, jobs, visible_at)?;
        tx.commit()?;
        self.jobs_queued.notify_one();
        Ok(())
    }

    async fn wait_for_jobs(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.jobs_queued.notified()).await;
    }

    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<ReceivedJob>> {
        let now = self.now_nanos();
        let hidden_until = now.saturating_add(duration_nanos(visibility));
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut taken = Vec::new();
        {
            let mut select = tx.prepare_cached(
                "SELECT id, job, receive_count FROM queue WHERE visible_at <= ?1 ORDER BY visible_at, id LIMIT ?2",
            )?;
            let rows = select.query_map(params![now, max as i64], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
            })?;
            let mut update =
                tx.prepare_cached("UPDATE queue SET visible_at = ?2, receive_count = ?3, receipt = ?4 WHERE id = ?1")?;
            for row in rows {
                let (id, job, count) = row?;
                let count = count + 1;
                let receipt = format!("{id}:{count}");
                update.execute(params![id, hidden_until, count, receipt])?;
                let job: DeliveryJob = serde_json::from_str(&job).map_err(|e| corrupt("queued job", e))?;
                taken.push(ReceivedJob::new(receipt, job));
            }
        }
        tx.commit()?;
        Ok(taken)
    }

    async fn ack(&self, receipt: &str) -> Result<()> {
        let (id, _) = parse_receipt(receipt)?;
        self.conn().execute("DELETE FROM queue WHERE id = ?1 AND receipt = ?2", params![id, receipt])?;
        Ok(())
    }

    async fn ack_many(&self, receipts: &[String]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut delete = tx.prepare_cached("DELETE FROM queue WHERE id = ?1 AND receipt = ?2")?;
            for receipt in receipts {
                let (id, _) = parse_receipt(receipt)?;
                delete.execute(params![id, receipt])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    async fn retry_later(&self, received: &ReceivedJob, delay: Duration) -> Result<()> {
        let (id, _) = parse_receipt(&received.receipt)?;
        let visible_at = self.now_nanos().saturating_add(duration_nanos(delay));
        // The row's visibility carries the delay; the job carries the attempt it used up.
        // Without its receipt the job is waiting, not in flight (see `recover_in_flight`).
        self.conn().execute(
            "UPDATE queue SET job = ?4, visible_at = ?3, receipt = NULL WHERE id = ?1 AND receipt = ?2",
            params![id, received.receipt, visible_at, serde_json::to_string(&received.job.next_attempt(None))?],
        )?;
        Ok(())
    }

    async fn defer(&self, receipt: &str, delay: Duration) -> Result<()> {
        let (id, _) = parse_receipt(receipt)?;
        let visible_at = self.now_nanos().saturating_add(duration_nanos(delay));
        self.conn().execute(
            "UPDATE queue SET visible_at = ?3, receipt = NULL, receive_count = MAX(receive_count - 1, 0) \
             WHERE id = ?1 AND receipt = ?2",
            params![id, receipt, visible_at],
        )?;
        Ok(())
    }

    async fn dead_letter(&self, receipt: &str, job: &DeliveryJob) -> Result<()> {
        let (id, _) = parse_receipt(receipt)?;
        let now = self.now_nanos();
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let removed = tx.execute("DELETE FROM queue WHERE id = ?1 AND receipt = ?2", params![id, receipt])?;
        // Only the current holder of the receipt may move it, so a job is never dead-lettered twice.
        if removed == 1 {
            tx.execute(
                "INSERT INTO dead_letters (job, dead_at) VALUES (?1, ?2)",
                params![serde_json::to_string(job)?, now],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    async fn recover_in_flight(&self) -> Result<usize> {
        let recovered = self.conn().execute(
            "UPDATE queue SET visible_at = ?1, receive_count = MAX(receive_count - 1, 0), receipt = NULL \
             WHERE receipt IS NOT NULL",
            params![self.now_nanos()],
        )?;
        Ok(recovered)
    }

    async fn redrive_dead_letters(&self, limit: usize) -> Result<usize> {
        let now = self.now_nanos();
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let letters: Vec<(i64, String)> = {
            let mut select = tx.prepare_cached("SELECT id, job FROM dead_letters ORDER BY id LIMIT ?1")?;
            let rows =
                select.query_map(params![limit.min(i64::MAX as usize) as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        {
            let mut insert = tx.prepare_cached("INSERT INTO queue (job, visible_at) VALUES (?1, ?2)")?;
            let mut delete = tx.prepare_cached("DELETE FROM dead_letters WHERE id = ?1")?;
            for (id, job) in &letters {
                let job: DeliveryJob = serde_json::from_str(job).map_err(|e| corrupt("dead letter", e))?;
                // Replayed with a full schedule ahead of it.
                insert.execute(params![serde_json::to_string(&job.fresh())?, now])?;
                delete.execute(params![id])?;
            }
        }
        tx.commit()?;
        Ok(letters.len())
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeliveryJob>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT job FROM dead_letters ORDER BY id LIMIT ?1")?;
        let rows = stmt.query_map(params![limit as i64], |r| r.get::<_, String>(0))?;
        rows.map(|job| serde_json::from_str(&job?).map_err(|e| corrupt("dead letter", e))).collect()
    }
}
