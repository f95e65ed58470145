//! The store capabilities on SQLite: subscriptions, keys, the message log, limits, store groups.

use super::queue::{read_message, read_publish};
use super::{corrupt, from_nanos, to_nanos, SqliteBackend};
use crate::domain::{
    ApiKey, AttemptRecord, OrganizationId, PublishRecord, Scope, StoreGroup, Subscription, SubscriptionStatus,
};
use crate::ports::{AttemptOutcome, AttemptQuery, KeyStore, Limits, MessageLog, StoreGroups, SubscriptionStore};
use crate::{Error, Result};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::str::FromStr;
use time::OffsetDateTime;
use uuid::Uuid;

fn subscription_from_row(row: &Row<'_>) -> Result<Subscription> {
    let get = |i: usize| -> Result<String> { Ok(row.get::<_, String>(i)?) };
    Ok(Subscription {
        organization: OrganizationId::from_str(&get(0)?).map_err(|e| corrupt("organization", e))?,
        id: Uuid::parse_str(&get(1)?).map_err(|e| corrupt("subscription id", e))?,
        dialect: get(2)?.parse().map_err(|e| corrupt("dialect", e))?,
        transport: get(3)?,
        event_names: serde_json::from_str(&get(4)?).map_err(|e| corrupt("event names", e))?,
        destination: get(5)?,
        // Stored as "" when there is none (the column predates optional contacts).
        contact_email: Some(get(6)?).filter(|c| !c.is_empty()),
        status: get(7)?.parse().map_err(|e| corrupt("status", e))?,
        signing_key: get(8)?,
        created_at: from_nanos(row.get(9)?)?,
        updated_at: from_nanos(row.get(10)?)?,
        failing_since: row.get::<_, Option<i64>>(11)?.map(from_nanos).transpose()?,
        previous_signing_keys: serde_json::from_str(&get(12)?).map_err(|e| corrupt("previous signing keys", e))?,
        delivery: serde_json::from_str(&get(13)?).map_err(|e| corrupt("delivery options", e))?,
        slow_since: row.get::<_, Option<i64>>(14)?.map(from_nanos).transpose()?,
    })
}

/// An attempt as the `attempts` table keeps it.
struct StoredAttempt {
    org: String,
    subscription_id: String,
    message_id: String,
    event_name: String,
    attempt: u32,
    at: i64,
    status: Option<u16>,
    latency_ms: i64,
    response_excerpt: String,
    error: Option<String>,
    request_headers: String,
    dead_lettered: bool,
}

const SUBSCRIPTION_COLUMNS: &str = "org, id, dialect, transport, event_names, destination, contact_email, status, \
                                    signing_key, created_at, updated_at, failing_since, previous_signing_keys, delivery, \
                                    slow_since";

fn api_key_from_row(row: &Row<'_>) -> Result<ApiKey> {
    let scopes: String = row.get(3)?;
    let scopes: Vec<String> = serde_json::from_str(&scopes).map_err(|e| corrupt("scopes", e))?;
    let scopes =
        scopes.iter().map(|s| Scope::from_str(s)).collect::<Result<Vec<_>, _>>().map_err(|e| corrupt("scopes", e))?;
    Ok(ApiKey {
        id: Uuid::parse_str(&row.get::<_, String>(0)?).map_err(|e| corrupt("key id", e))?,
        hash: row.get(1)?,
        organization: OrganizationId::from_str(&row.get::<_, String>(2)?).map_err(|e| corrupt("organization", e))?,
        scopes,
        created_at: from_nanos(row.get(4)?)?,
        expires_at: row.get::<_, Option<i64>>(5)?.map(from_nanos).transpose()?,
        revoked_at: row.get::<_, Option<i64>>(6)?.map(from_nanos).transpose()?,
        client_secret: row.get(7)?,
    })
}

const API_KEY_COLUMNS: &str = "id, hash, org, scopes, created_at, expires_at, revoked_at, client_secret";

fn subscription_exists(conn: &Connection, subscription: &Subscription) -> Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM subscriptions WHERE org = ?1 AND id = ?2",
            params![subscription.organization.to_string(), subscription.id.to_string()],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

fn read_subscription(conn: &Connection, org: OrganizationId, id: Uuid) -> Result<Option<Subscription>> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE org = ?1 AND id = ?2"))?;
    let mut rows = stmt.query(params![org.to_string(), id.to_string()])?;
    match rows.next()? {
        Some(row) => Ok(Some(subscription_from_row(row)?)),
        None => Ok(None),
    }
}

fn subscription_params(s: &Subscription) -> Result<[Box<dyn rusqlite::ToSql>; 15]> {
    Ok([
        Box::new(s.organization.to_string()),
        Box::new(s.id.to_string()),
        Box::new(s.dialect.as_str()),
        Box::new(s.transport.clone()),
        Box::new(serde_json::to_string(&s.event_names)?),
        Box::new(s.destination.clone()),
        Box::new(s.contact_email.clone().unwrap_or_default()),
        Box::new(s.status.as_str()),
        Box::new(s.signing_key.clone()),
        Box::new(to_nanos(s.created_at)),
        Box::new(to_nanos(s.updated_at)),
        Box::new(s.failing_since.map(to_nanos)),
        Box::new(serde_json::to_string(&s.previous_signing_keys)?),
        Box::new(serde_json::to_string(&s.delivery)?),
        Box::new(s.slow_since.map(to_nanos)),
    ])
}

#[async_trait]
impl SubscriptionStore for SqliteBackend {
    async fn create_subscription(&self, subscription: &Subscription) -> Result<()> {
        let subscription = subscription.clone();
        self.write(move |conn| {
            let values = subscription_params(&subscription)?;
            let inserted = conn.execute(
                &format!("INSERT OR IGNORE INTO subscriptions ({SUBSCRIPTION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"),
                rusqlite::params_from_iter(values.iter()),
            )?;
            if inserted == 0 {
                return Err(Error::Duplicate(format!("a subscription with uuid {} already exists", subscription.id)));
            }
            Ok(())
        })
        .await
    }

    async fn get_subscription(&self, org: OrganizationId, id: Uuid) -> Result<Option<Subscription>> {
        read_subscription(&self.reader(), org, id)
    }

    async fn list_subscriptions(&self, org: OrganizationId) -> Result<Vec<Subscription>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE org = ?1 ORDER BY created_at, rowid"
        ))?;
        let mut rows = stmt.query(params![org.to_string()])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(subscription_from_row(row)?);
        }
        Ok(out)
    }

    async fn update_subscription(&self, subscription: &Subscription, read_version: OffsetDateTime) -> Result<bool> {
        let subscription = subscription.clone();
        self.write(move |conn| {
            let mut values: Vec<Box<dyn rusqlite::ToSql>> = subscription_params(&subscription)?.into();
            values.push(Box::new(to_nanos(read_version)));
            let updated = conn.execute(
                "UPDATE subscriptions SET dialect = ?3, transport = ?4, event_names = ?5, destination = ?6, \
                 contact_email = ?7, status = ?8, signing_key = ?9, created_at = ?10, updated_at = ?11, failing_since = ?12, \
                 previous_signing_keys = ?13, delivery = ?14, slow_since = ?15 WHERE org = ?1 AND id = ?2 AND updated_at = ?16",
                rusqlite::params_from_iter(values.iter()),
            )?;
            if updated == 0 {
                return match subscription_exists(conn, &subscription)? {
                    true => Ok(false),
                    false => Err(Error::NotFound(format!("subscription {} not found", subscription.id))),
                };
            }
            Ok(true)
        })
        .await
    }

    async fn delete_subscription(&self, org: OrganizationId, id: Uuid) -> Result<bool> {
        let (org, id) = (org.to_string(), id.to_string());
        self.write(move |conn| {
            let deleted = conn.execute("DELETE FROM subscriptions WHERE org = ?1 AND id = ?2", params![org, id])?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn set_subscription_health(&self, subscription: &Subscription) -> Result<()> {
        let subscription = subscription.clone();
        self.write(move |conn| {
            let updated = conn.execute(
                "UPDATE subscriptions SET status = ?3, failing_since = ?4, slow_since = ?6 \
                 WHERE org = ?1 AND id = ?2 AND status <> ?5",
                params![
                    subscription.organization.to_string(),
                    subscription.id.to_string(),
                    subscription.status.as_str(),
                    subscription.failing_since.map(to_nanos),
                    SubscriptionStatus::Inactive.as_str(),
                    subscription.slow_since.map(to_nanos),
                ],
            )?;
            if updated == 0 && !subscription_exists(conn, &subscription)? {
                return Err(Error::NotFound(format!("subscription {} not found", subscription.id)));
            }
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl KeyStore for SqliteBackend {
    async fn put_api_key(&self, key: &ApiKey) -> Result<()> {
        let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
        let scopes = serde_json::to_string(&scopes)?;
        let key = key.clone();
        self.write(move |conn| {
            conn.execute(
                &format!("INSERT OR REPLACE INTO api_keys ({API_KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
                params![
                    key.id.to_string(),
                    key.hash,
                    key.organization.to_string(),
                    scopes,
                    to_nanos(key.created_at),
                    key.expires_at.map(to_nanos),
                    key.revoked_at.map(to_nanos),
                    key.client_secret,
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn find_api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(&format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE hash = ?1"))?;
        let mut rows = stmt.query(params![hash])?;
        match rows.next()? {
            Some(row) => Ok(Some(api_key_from_row(row)?)),
            None => Ok(None),
        }
    }

    async fn list_api_keys(&self, org: Option<OrganizationId>) -> Result<Vec<ApiKey>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE ?1 IS NULL OR org = ?1 ORDER BY created_at, rowid"
        ))?;
        let mut rows = stmt.query(params![org.map(|o| o.to_string())])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(api_key_from_row(row)?);
        }
        Ok(out)
    }

    async fn revoke_api_key(&self, id: Uuid, at: OffsetDateTime) -> Result<bool> {
        self.write(move |conn| {
            let exists: Option<Option<i64>> = conn
                .query_row("SELECT revoked_at FROM api_keys WHERE id = ?1", params![id.to_string()], |r| r.get(0))
                .optional()?;
            match exists {
                None => Ok(false),
                Some(Some(_)) => Ok(true),
                Some(None) => {
                    conn.execute(
                        "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1",
                        params![id.to_string(), to_nanos(at)],
                    )?;
                    Ok(true)
                }
            }
        })
        .await
    }
}

#[async_trait]
impl MessageLog for SqliteBackend {
    async fn get_publish(&self, org: OrganizationId, message_id: &str) -> Result<Option<PublishRecord>> {
        let conn = self.reader();
        Ok(read_publish(&conn, org, message_id)?.filter(|r| r.expires_at > self.clock.now()))
    }

    async fn delivery_records(
        &self,
        org: OrganizationId,
        subscription_id: Uuid,
        message_id: &str,
        _consistent: bool,
        with_payload: bool,
    ) -> Result<(Option<Subscription>, Option<PublishRecord>)> {
        // One reader for both, in one read transaction: one snapshot, and the reader's page
        // cache checked against the writer's once rather than for each statement.
        let conn = self.reader();
        conn.prepare_cached("BEGIN")?.execute([])?;
        let read = (|| {
            let message = read_message(&conn, org, message_id, with_payload)?;
            Ok::<_, Error>((read_subscription(&conn, org, subscription_id)?, message))
        })();
        conn.prepare_cached("COMMIT")?.execute([])?;
        let (subscription, message) = read?;
        Ok((subscription, message.filter(|r| r.expires_at > self.clock.now())))
    }

    async fn purge_expired(&self, now: OffsetDateTime, limit: usize) -> Result<usize> {
        // Bounded work per call, so the writer is never held long; freed pages are reused by
        // later writes, so a steady load keeps the file at a steady size.
        self.write(move |conn| {
            let attempts = conn.execute(
                "DELETE FROM attempts WHERE id IN (SELECT id FROM attempts WHERE at < ?1 ORDER BY at LIMIT ?2)",
                params![to_nanos(now - crate::domain::retention::ATTEMPT_RETENTION), limit as i64],
            )?;
            let expired: Vec<i64> = conn
                .prepare_cached("SELECT rowid FROM publishes WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2")?
                .query_map(params![to_nanos(now), limit as i64], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            // Jobs still queued keep their message's payload (a retry, a long line, a backlog).
            super::queue::detach_jobs(conn, &expired)?;
            let mut delete = conn.prepare_cached("DELETE FROM publishes WHERE rowid = ?1")?;
            let mut messages = 0;
            for rowid in expired {
                messages += delete.execute(params![rowid])?;
            }
            Ok(attempts + messages)
        })
        .await
    }

    async fn retain_message(&self, org: OrganizationId, message_id: &str, until: OffsetDateTime) -> Result<()> {
        let (org, message_id, until) = (org.to_string(), message_id.to_owned(), to_nanos(until));
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE publishes SET expires_at = ?3 WHERE org = ?1 AND message_id = ?2 AND expires_at < ?3",
            )?
            .execute(params![org, message_id, until])?;
            Ok(())
        })
        .await
    }

    async fn record_attempts(&self, attempts: &[AttemptRecord]) -> Result<()> {
        // Made into rows here, so the writer thread (every write's one lane) only writes.
        let rows = attempts
            .iter()
            .map(|a| {
                Ok(StoredAttempt {
                    org: a.organization.to_string(),
                    subscription_id: a.subscription_id.to_string(),
                    message_id: a.message_id.clone(),
                    event_name: a.event_name.clone(),
                    attempt: a.attempt,
                    at: to_nanos(a.at),
                    status: a.status,
                    latency_ms: a.latency_ms as i64,
                    response_excerpt: a.response_excerpt.clone(),
                    error: a.error.clone(),
                    request_headers: serde_json::to_string(&a.request_headers).map_err(Error::internal)?,
                    dead_lettered: a.dead_lettered,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        self.write(move |conn| {
            let mut insert = conn.prepare_cached(
                "INSERT INTO attempts (org, subscription_id, message_id, event_name, attempt, at, status, latency_ms, response_excerpt, error, request_headers, dead_lettered) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?;
            for a in &rows {
                insert.execute(params![
                    a.org,
                    a.subscription_id,
                    a.message_id,
                    a.event_name,
                    a.attempt,
                    a.at,
                    a.status,
                    a.latency_ms,
                    a.response_excerpt,
                    a.error,
                    a.request_headers,
                    a.dead_lettered,
                ])?;
            }
            Ok(())
        })
        .await
    }

    async fn attempts(
        &self,
        org: OrganizationId,
        subscription_id: Uuid,
        query: &AttemptQuery,
    ) -> Result<Vec<AttemptRecord>> {
        let conn = self.reader();
        // One statement for every query: an absent bound or filter compares to NULL and passes.
        let mut stmt = conn.prepare_cached(
            "SELECT message_id, event_name, attempt, at, status, latency_ms, response_excerpt, error, request_headers, dead_lettered FROM attempts \
             WHERE org = ?1 AND subscription_id = ?2 AND (?3 IS NULL OR at >= ?3) AND (?4 IS NULL OR at < ?4) \
             AND (?5 IS NULL OR event_name = ?5) \
             AND (?6 IS NULL OR (?6 = (status IS NOT NULL AND status BETWEEN 200 AND 299))) \
             AND (?8 IS NULL OR message_id = ?8) \
             ORDER BY at DESC, id DESC LIMIT ?7",
        )?;
        let delivered = query.outcome.map(|outcome| outcome == AttemptOutcome::Delivered);
        let mut rows = stmt.query(params![
            org.to_string(),
            subscription_id.to_string(),
            query.since.map(to_nanos),
            query.until.map(to_nanos),
            query.event,
            delivered,
            query.limit as i64,
            query.message_id
        ])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(AttemptRecord {
                organization: org,
                subscription_id,
                message_id: r.get(0)?,
                event_name: r.get(1)?,
                attempt: r.get(2)?,
                at: from_nanos(r.get(3)?)?,
                status: r.get(4)?,
                latency_ms: r.get::<_, i64>(5)? as u64,
                response_excerpt: r.get(6)?,
                error: r.get(7)?,
                request_headers: serde_json::from_str(&r.get::<_, String>(8)?).map_err(|e| corrupt("attempt", e))?,
                dead_lettered: r.get(9)?,
            });
        }
        Ok(out)
    }
}

#[async_trait]
impl Limits for SqliteBackend {
    async fn claim_alert(
        &self,
        org: OrganizationId,
        subscription_id: Uuid,
        at: OffsetDateTime,
        window: time::Duration,
    ) -> Result<bool> {
        // One statement: the insert or the update happens only if no alert went out within the window.
        self.write(move |conn| {
            let changed = conn.execute(
                "INSERT INTO alerts (org, subscription_id, sent_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (org, subscription_id) DO UPDATE SET sent_at = excluded.sent_at WHERE sent_at <= ?4",
                params![org.to_string(), subscription_id.to_string(), to_nanos(at), to_nanos(at - window)],
            )?;
            Ok(changed == 1)
        })
        .await
    }

    async fn use_once(&self, nonce: &str, now: OffsetDateTime, expires_at: OffsetDateTime) -> Result<bool> {
        let (nonce, now, expires_at) = (nonce.to_owned(), to_nanos(now), to_nanos(expires_at));
        self.write(move |conn| {
            // Expired nonces may be used again (their requests are refused by age anyway).
            conn.prepare_cached("DELETE FROM nonces WHERE expires_at <= ?1")?.execute(params![now])?;
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO nonces (nonce, expires_at) VALUES (?1, ?2) ON CONFLICT (nonce) DO NOTHING",
                )?
                .execute(params![nonce, expires_at])?;
            Ok(inserted == 1)
        })
        .await
    }

    async fn was_used(&self, nonce: &str, now: OffsetDateTime) -> Result<bool> {
        Ok(self
            .reader()
            .prepare_cached("SELECT 1 FROM nonces WHERE nonce = ?1 AND expires_at > ?2")?
            .query_row(params![nonce, to_nanos(now)], |_| Ok(()))
            .optional()?
            .is_some())
    }

    async fn shared_secret(&self, name: &str, candidate: &str) -> Result<String> {
        let (name, candidate) = (name.to_owned(), candidate.to_owned());
        self.write(move |conn| {
            conn.prepare_cached("INSERT INTO secrets (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING")?
                .execute(params![name, candidate])?;
            Ok(conn
                .prepare_cached("SELECT value FROM secrets WHERE name = ?1")?
                .query_row(params![name], |r| r.get(0))?)
        })
        .await
    }

    async fn reserve_slots(
        &self,
        key: &str,
        version: i64,
        now: OffsetDateTime,
        interval: std::time::Duration,
        count: u32,
    ) -> Result<Option<OffsetDateTime>> {
        let (key, now, interval) = (key.to_owned(), to_nanos(now), super::duration_nanos(interval));
        let first = self
            .write(move |conn| {
                let pace: Option<(i64, i64)> = conn
                    .prepare_cached("SELECT next, version FROM paces WHERE key = ?1")?
                    .query_row(params![key], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                let first = match pace {
                    Some((_, newer)) if newer > version => return Ok(None),
                    Some((next, same)) if same == version => next.max(now),
                    _ => now,
                };
                conn.prepare_cached(
                    "INSERT INTO paces (key, next, version) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (key) DO UPDATE SET next = excluded.next, version = excluded.version",
                )?
                .execute(params![
                    key,
                    first.saturating_add(interval.saturating_mul(i64::from(count))),
                    version
                ])?;
                Ok(Some(first))
            })
            .await?;
        first.map(from_nanos).transpose()
    }

    async fn count_requests(
        &self,
        client: &str,
        requests: u32,
        window_start: i64,
        _expires_at: OffsetDateTime,
    ) -> Result<u32> {
        let client = client.to_owned();
        self.write(move |conn| {
            // Passed windows are useless: dropping every client's keeps the table as small as the
            // number of clients active in the current window.
            conn.prepare_cached("DELETE FROM request_counts WHERE window_start < ?1")?
                .execute(params![window_start])?;
            let hits = conn
                .prepare_cached(
                    "INSERT INTO request_counts (client, window_start, hits) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (client, window_start) DO UPDATE SET hits = hits + ?3 RETURNING hits",
                )?
                .query_row(params![client, window_start, requests], |r| r.get::<_, u32>(0))?;
            Ok(hits)
        })
        .await
    }
}

#[async_trait]
impl StoreGroups for SqliteBackend {
    async fn put_store_group(&self, name: &str, members: &[OrganizationId]) -> Result<()> {
        let (name, members) = (name.to_owned(), members.to_vec());
        self.write(move |conn| {
            conn.execute("DELETE FROM store_groups WHERE name = ?1", params![name])?;
            for org in &members {
                conn.execute(
                    "INSERT OR IGNORE INTO store_groups (name, org) VALUES (?1, ?2)",
                    params![name, org.to_string()],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn list_store_groups(&self) -> Result<Vec<StoreGroup>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached("SELECT name, org FROM store_groups ORDER BY name, org")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut groups: Vec<StoreGroup> = Vec::new();
        for row in rows {
            let (name, org) = row?;
            let org = OrganizationId::from_str(&org).map_err(|e| corrupt("store group member", e))?;
            match groups.last_mut() {
                Some(group) if group.name == name => group.members.push(org),
                _ => groups.push(StoreGroup { name, members: vec![org] }),
            }
        }
        Ok(groups)
    }
}
