//! One SQLite file holds the store and the durable delivery queue.
//!
//! WAL journal with `synchronous=NORMAL`: a commit survives a process crash, and readers never
//! block the writer. The connection sits behind a mutex; every operation is a short
//! statement or transaction, so holding it on the async worker is cheaper than a thread hop.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::{ApiKey, OrganizationId, Scope, Subscription, SubscriptionStatus};
use crate::domain::{AttemptRecord, DeliveryJob, PublishRecord, StoreGroup};
use crate::ports::{
    Clock, KeyStore, Limits, MessageLog, PublishLog, Queue, ReceivedJob, StoreGroups, SubscriptionStore,
};
use crate::{Error, Result};

/// The fan-out index key of all-events subscriptions (the DynamoDB GSI uses the same `*`).
const ALL_EVENTS: &str = "*";

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS subscriptions (
    org           TEXT NOT NULL,
    id            TEXT NOT NULL,
    dialect       TEXT NOT NULL,
    transport     TEXT NOT NULL,
    event_names   TEXT NOT NULL,
    destination   TEXT NOT NULL,
    contact_email TEXT NOT NULL,
    status        TEXT NOT NULL,
    failing_since INTEGER,
    signing_key   TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (org, id)
);
CREATE TABLE IF NOT EXISTS subscription_events (
    org             TEXT NOT NULL,
    event           TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    PRIMARY KEY (org, event, subscription_id)
);
CREATE TABLE IF NOT EXISTS api_keys (
    id         TEXT PRIMARY KEY,
    hash       TEXT NOT NULL UNIQUE,
    org        TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
);
CREATE TABLE IF NOT EXISTS queue (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    job           TEXT NOT NULL,
    visible_at    INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt       TEXT
);
CREATE INDEX IF NOT EXISTS queue_by_visibility ON queue (visible_at);
CREATE TABLE IF NOT EXISTS publishes (
    org           TEXT NOT NULL,
    message_id    TEXT NOT NULL,
    event_name    TEXT NOT NULL,
    payload       TEXT NOT NULL,
    subscriptions INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    PRIMARY KEY (org, message_id)
);
CREATE TABLE IF NOT EXISTS request_counts (
    client       TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    hits         INTEGER NOT NULL,
    PRIMARY KEY (client, window_start)
);
CREATE TABLE IF NOT EXISTS store_groups (
    name TEXT NOT NULL,
    org  TEXT NOT NULL,
    PRIMARY KEY (name, org)
);
CREATE TABLE IF NOT EXISTS alerts (
    org             TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    sent_at         INTEGER NOT NULL,
    PRIMARY KEY (org, subscription_id)
);
CREATE TABLE IF NOT EXISTS attempts (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    org              TEXT NOT NULL,
    subscription_id  TEXT NOT NULL,
    message_id       TEXT NOT NULL,
    event_name       TEXT NOT NULL,
    attempt          INTEGER NOT NULL,
    at               INTEGER NOT NULL,
    status           INTEGER,
    latency_ms       INTEGER NOT NULL,
    response_excerpt TEXT NOT NULL,
    error            TEXT
);
CREATE INDEX IF NOT EXISTS attempts_by_subscription ON attempts (org, subscription_id, at);
CREATE TABLE IF NOT EXISTS dead_letters (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    job     TEXT NOT NULL,
    dead_at INTEGER NOT NULL
);
"#;

/// The schema version this build writes (`PRAGMA user_version`). A new column or table means
/// a new version and a step in [`migrate`].
pub const SCHEMA_VERSION: i64 = 3;

/// Version 2: API keys may carry a request-signing client secret.
const ADD_CLIENT_SECRET: &str = "ALTER TABLE api_keys ADD COLUMN client_secret TEXT;";

/// Version 3: the worker's retention purge finds old attempts and expired messages by index.
const ADD_EXPIRY_INDEXES: &str = "CREATE INDEX IF NOT EXISTS attempts_by_time ON attempts (at); \
                                  CREATE INDEX IF NOT EXISTS publishes_by_expiry ON publishes (expires_at);";

/// Brings a new file to the current schema; refuses a file from a newer or unknown build rather
/// than misreading it.
fn migrate(conn: &Connection, path: &Path) -> Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let steps = match version {
        0 => vec![SCHEMA, ADD_CLIENT_SECRET, ADD_EXPIRY_INDEXES],
        1 => vec![ADD_CLIENT_SECRET, ADD_EXPIRY_INDEXES],
        2 => vec![ADD_EXPIRY_INDEXES],
        SCHEMA_VERSION => return Ok(()),
        other => {
            return Err(Error::internal(format!(
                "{} has schema version {other}; this build of Tidings reads version {SCHEMA_VERSION}",
                path.display()
            )))
        }
    };
    // Every step and the new version in one transaction: a file is at one version or the next.
    conn.execute_batch(&format!("BEGIN; {} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;", steps.concat()))?;
    Ok(())
}

/// Exclusive use of a data directory by one `tidings serve`: held while the process runs (the
/// operating system releases it when the process ends, however it ends).
pub struct DataDirLock(#[allow(dead_code)] std::fs::File);

impl DataDirLock {
    /// Takes the lock, or says which directory another process is using.
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| Error::internal(format!("cannot create data directory {}: {e}", data_dir.display())))?;
        let path = data_dir.join("serve.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::internal(format!("cannot open {}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => Ok(DataDirLock(file)),
            Err(std::fs::TryLockError::WouldBlock) => Err(Error::internal(format!(
                "{} is in use by another tidings serve; give each its own --data-dir",
                data_dir.display()
            ))),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(Error::internal(format!("cannot lock {}: {e}", path.display())))
            }
        }
    }
}

/// The SQLite file behind the store and queue ports.
pub struct SqliteBackend {
    conn: Mutex<Connection>,
    clock: Arc<dyn Clock>,
    path: PathBuf,
    /// Wakes the consumer in this process (the worker of `tidings serve`) when jobs were queued.
    jobs_queued: tokio::sync::Notify,
}

impl SqliteBackend {
    /// The database file inside a data directory.
    pub fn file_in(data_dir: &Path) -> PathBuf {
        data_dir.join("tidings.db")
    }

    /// Opens (creating if needed) `<data_dir>/tidings.db`.
    pub fn open_in(data_dir: &Path, clock: Arc<dyn Clock>) -> Result<Self> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| Error::internal(format!("cannot create data directory {}: {e}", data_dir.display())))?;
        Self::open(&Self::file_in(data_dir), clock)
    }

    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Self> {
        let conn =
            Connection::open(path).map_err(|e| Error::internal(format!("cannot open {}: {e}", path.display())))?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        migrate(&conn, path)?;
        Ok(SqliteBackend { conn: Mutex::new(conn), clock, path: path.to_owned(), jobs_queued: Default::default() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite itself consistent (transactions roll
        // back on drop), so a poisoned lock is safe to reuse.
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn now_nanos(&self) -> i64 {
        to_nanos(self.clock.now())
    }
}

fn to_nanos(t: OffsetDateTime) -> i64 {
    t.unix_timestamp_nanos() as i64
}

fn from_nanos(n: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(n as i128).map_err(Error::internal)
}

fn duration_nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn corrupt(what: &str, err: impl std::fmt::Display) -> Error {
    Error::internal(format!("stored {what} is unreadable: {err}"))
}

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
    })
}

const SUBSCRIPTION_COLUMNS: &str = "org, id, dialect, transport, event_names, destination, contact_email, status, \
                                    signing_key, created_at, updated_at, failing_since";

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

/// Rows of the fan-out index for one subscription.
fn index_keys(subscription: &Subscription) -> Vec<&str> {
    if subscription.event_names.is_empty() {
        vec![ALL_EVENTS]
    } else {
        subscription.event_names.iter().map(String::as_str).collect()
    }
}

fn write_index(tx: &rusqlite::Transaction<'_>, subscription: &Subscription) -> Result<()> {
    let org = subscription.organization.to_string();
    let id = subscription.id.to_string();
    tx.execute("DELETE FROM subscription_events WHERE org = ?1 AND subscription_id = ?2", params![org, id])?;
    let mut insert = tx.prepare_cached(
        "INSERT OR IGNORE INTO subscription_events (org, event, subscription_id) VALUES (?1, ?2, ?3)",
    )?;
    for event in index_keys(subscription) {
        insert.execute(params![org, event, id])?;
    }
    Ok(())
}

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

fn subscription_params(s: &Subscription) -> Result<[Box<dyn rusqlite::ToSql>; 12]> {
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
    ])
}

#[async_trait]
impl SubscriptionStore for SqliteBackend {
    async fn create_subscription(&self, subscription: &Subscription) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let values = subscription_params(subscription)?;
        let inserted = tx.execute(
            &format!("INSERT OR IGNORE INTO subscriptions ({SUBSCRIPTION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"),
            rusqlite::params_from_iter(values.iter()),
        )?;
        if inserted == 0 {
            return Err(Error::Duplicate(format!("a subscription with uuid {} already exists", subscription.id)));
        }
        write_index(&tx, subscription)?;
        tx.commit()?;
        Ok(())
    }

    async fn get_subscription(&self, org: OrganizationId, id: Uuid) -> Result<Option<Subscription>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE org = ?1 AND id = ?2"))?;
        let mut rows = stmt.query(params![org.to_string(), id.to_string()])?;
        match rows.next()? {
            Some(row) => Ok(Some(subscription_from_row(row)?)),
            None => Ok(None),
        }
    }

    async fn list_subscriptions(&self, org: OrganizationId) -> Result<Vec<Subscription>> {
        let conn = self.conn();
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
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut values: Vec<Box<dyn rusqlite::ToSql>> = subscription_params(subscription)?.into();
        values.push(Box::new(to_nanos(read_version)));
        let updated = tx.execute(
            "UPDATE subscriptions SET dialect = ?3, transport = ?4, event_names = ?5, destination = ?6, \
             contact_email = ?7, status = ?8, signing_key = ?9, created_at = ?10, updated_at = ?11, failing_since = ?12 \
             WHERE org = ?1 AND id = ?2 AND updated_at = ?13",
            rusqlite::params_from_iter(values.iter()),
        )?;
        if updated == 0 {
            return match subscription_exists(&tx, subscription)? {
                true => Ok(false),
                false => Err(Error::NotFound(format!("subscription {} not found", subscription.id))),
            };
        }
        write_index(&tx, subscription)?;
        tx.commit()?;
        Ok(true)
    }

    async fn delete_subscription(&self, org: OrganizationId, id: Uuid) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let (org, id) = (org.to_string(), id.to_string());
        let deleted = tx.execute("DELETE FROM subscriptions WHERE org = ?1 AND id = ?2", params![org, id])?;
        tx.execute("DELETE FROM subscription_events WHERE org = ?1 AND subscription_id = ?2", params![org, id])?;
        tx.commit()?;
        Ok(deleted > 0)
    }

    async fn subscriptions_for_event(&self, org: OrganizationId, event_name: &str) -> Result<Vec<Subscription>> {
        let conn = self.conn();
        let columns: Vec<String> = SUBSCRIPTION_COLUMNS.split(", ").map(|c| format!("s.{c}")).collect();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT DISTINCT {} FROM subscription_events e JOIN subscriptions s \
             ON s.org = e.org AND s.id = e.subscription_id \
             WHERE e.org = ?1 AND e.event IN (?2, ?3) ORDER BY s.created_at, s.rowid",
            columns.join(", ")
        ))?;
        let mut rows = stmt.query(params![org.to_string(), event_name, ALL_EVENTS])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(subscription_from_row(row)?);
        }
        Ok(out)
    }

    async fn set_subscription_health(&self, subscription: &Subscription) -> Result<()> {
        let conn = self.conn();
        let updated = conn.execute(
            "UPDATE subscriptions SET status = ?3, failing_since = ?4 WHERE org = ?1 AND id = ?2 AND status <> ?5",
            params![
                subscription.organization.to_string(),
                subscription.id.to_string(),
                subscription.status.as_str(),
                subscription.failing_since.map(to_nanos),
                SubscriptionStatus::Inactive.as_str(),
            ],
        )?;
        if updated == 0 && !subscription_exists(&conn, subscription)? {
            return Err(Error::NotFound(format!("subscription {} not found", subscription.id)));
        }
        Ok(())
    }
}

#[async_trait]
impl KeyStore for SqliteBackend {
    async fn put_api_key(&self, key: &ApiKey) -> Result<()> {
        let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
        self.conn().execute(
            &format!("INSERT OR REPLACE INTO api_keys ({API_KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
            params![
                key.id.to_string(),
                key.hash,
                key.organization.to_string(),
                serde_json::to_string(&scopes)?,
                to_nanos(key.created_at),
                key.expires_at.map(to_nanos),
                key.revoked_at.map(to_nanos),
                key.client_secret,
            ],
        )?;
        Ok(())
    }

    async fn find_api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE hash = ?1"))?;
        let mut rows = stmt.query(params![hash])?;
        match rows.next()? {
            Some(row) => Ok(Some(api_key_from_row(row)?)),
            None => Ok(None),
        }
    }

    async fn list_api_keys(&self, org: Option<OrganizationId>) -> Result<Vec<ApiKey>> {
        let conn = self.conn();
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
        let conn = self.conn();
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
    }
}

#[async_trait]
impl MessageLog for SqliteBackend {
    async fn get_publish(&self, org: OrganizationId, message_id: &str) -> Result<Option<PublishRecord>> {
        let conn = self.conn();
        Ok(read_publish(&conn, org, message_id)?.filter(|r| r.expires_at > self.clock.now()))
    }

    async fn purge_expired(&self, now: OffsetDateTime, limit: usize) -> Result<usize> {
        // Bounded work per call, so the writer is never held long; freed pages are reused by
        // later writes, so a steady load keeps the file at a steady size.
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let attempts = tx.execute(
            "DELETE FROM attempts WHERE id IN (SELECT id FROM attempts WHERE at < ?1 ORDER BY at LIMIT ?2)",
            params![to_nanos(now - crate::delivery::ATTEMPT_RETENTION), limit as i64],
        )?;
        let messages = tx.execute(
            "DELETE FROM publishes WHERE rowid IN (SELECT rowid FROM publishes WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2)",
            params![to_nanos(now), limit as i64],
        )?;
        tx.commit()?;
        Ok(attempts + messages)
    }

    async fn record_attempts(&self, attempts: &[AttemptRecord]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO attempts (org, subscription_id, message_id, event_name, attempt, at, status, latency_ms, response_excerpt, error) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            for a in attempts {
                insert.execute(params![
                    a.organization.to_string(),
                    a.subscription_id.to_string(),
                    a.message_id,
                    a.event_name,
                    a.attempt,
                    to_nanos(a.at),
                    a.status,
                    a.latency_ms as i64,
                    a.response_excerpt,
                    a.error,
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    async fn recent_attempts(
        &self,
        org: OrganizationId,
        subscription_id: Uuid,
        limit: usize,
    ) -> Result<Vec<AttemptRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT message_id, event_name, attempt, at, status, latency_ms, response_excerpt, error FROM attempts \
             WHERE org = ?1 AND subscription_id = ?2 ORDER BY at DESC, id DESC LIMIT ?3",
        )?;
        let mut rows = stmt.query(params![org.to_string(), subscription_id.to_string(), limit as i64])?;
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
        let changed = self.conn().execute(
            "INSERT INTO alerts (org, subscription_id, sent_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (org, subscription_id) DO UPDATE SET sent_at = excluded.sent_at WHERE sent_at <= ?4",
            params![org.to_string(), subscription_id.to_string(), to_nanos(at), to_nanos(at - window)],
        )?;
        Ok(changed == 1)
    }

    async fn count_request(&self, client: &str, window_start: i64, _expires_at: OffsetDateTime) -> Result<u32> {
        let conn = self.conn();
        // Passed windows are useless: dropping every client's keeps the table as small as the
        // number of clients active in the current window.
        conn.execute("DELETE FROM request_counts WHERE window_start < ?1", params![window_start])?;
        let hits = conn.query_row(
            "INSERT INTO request_counts (client, window_start, hits) VALUES (?1, ?2, 1) \
             ON CONFLICT (client, window_start) DO UPDATE SET hits = hits + 1 RETURNING hits",
            params![client, window_start],
            |r| r.get::<_, u32>(0),
        )?;
        Ok(hits)
    }
}

#[async_trait]
impl StoreGroups for SqliteBackend {
    async fn put_store_group(&self, name: &str, members: &[OrganizationId]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM store_groups WHERE name = ?1", params![name])?;
        for org in members {
            tx.execute(
                "INSERT OR IGNORE INTO store_groups (name, org) VALUES (?1, ?2)",
                params![name, org.to_string()],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    async fn list_store_groups(&self) -> Result<Vec<StoreGroup>> {
        let conn = self.conn();
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

fn read_publish(conn: &Connection, org: OrganizationId, message_id: &str) -> Result<Option<PublishRecord>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::SystemClock;

    #[tokio::test]
    async fn a_version_1_file_is_upgraded_in_place_and_keeps_its_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = SqliteBackend::file_in(dir.path());
        {
            let v1 = Connection::open(&path).unwrap();
            v1.execute_batch(SCHEMA).unwrap();
            v1.pragma_update(None, "user_version", 1).unwrap();
            v1.execute(
                "INSERT INTO api_keys (id, hash, org, scopes, created_at) VALUES (?1, 'h', ?2, '[\"READ:ORDER\"]', 0)",
                params![Uuid::nil().to_string(), Uuid::nil().to_string()],
            )
            .unwrap();
        }
        let backend = SqliteBackend::open(&path, Arc::new(SystemClock)).unwrap();
        let key = backend.find_api_key_by_hash("h").await.unwrap().unwrap();
        assert_eq!((key.scopes, key.client_secret), (vec![Scope::ReadOrder], None));
        let version: i64 = backend.conn().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[tokio::test]
    async fn the_purge_deletes_only_what_is_past_its_retention_and_at_most_the_limit_per_kind() {
        use crate::domain::PublishRecord;
        use crate::ports::PublishLog;
        let dir = tempfile::tempdir().unwrap();
        let backend = SqliteBackend::open(&SqliteBackend::file_in(dir.path()), Arc::new(SystemClock)).unwrap();
        let now = OffsetDateTime::now_utc();
        let org = OrganizationId(Uuid::new_v4());
        let subscription = Uuid::new_v4();
        let attempt = |id: &str, days_ago: i64| AttemptRecord {
            organization: org,
            subscription_id: subscription,
            message_id: id.into(),
            event_name: "ProductCreated".into(),
            attempt: 1,
            at: now - time::Duration::days(days_ago),
            status: Some(200),
            latency_ms: 1,
            response_excerpt: String::new(),
            error: None,
        };
        backend.record_attempts(&[attempt("old-1", 31), attempt("old-2", 40), attempt("recent", 29)]).await.unwrap();
        let message = |id: &str, expires_in_days: i64| PublishRecord {
            organization: org,
            message_id: id.into(),
            event_name: "ProductCreated".into(),
            payload: "{}".into(),
            subscriptions: 0,
            created_at: now - time::Duration::days(8),
            expires_at: now + time::Duration::days(expires_in_days),
        };
        for record in [message("expired-1", -1), message("expired-2", -2), message("kept", 1)] {
            backend.publish(&record, &[], time::Duration::hours(24)).await.unwrap();
        }
        let kept_ids = |attempts: Vec<AttemptRecord>| attempts.into_iter().map(|a| a.message_id).collect::<Vec<_>>();

        assert_eq!(backend.purge_expired(now, 1).await.unwrap(), 2, "one of each kind at most");
        assert_eq!(backend.purge_expired(now, 10).await.unwrap(), 2);
        assert_eq!(backend.purge_expired(now, 10).await.unwrap(), 0);
        assert_eq!(kept_ids(backend.recent_attempts(org, subscription, 10).await.unwrap()), ["recent"]);
        let left: Vec<String> = backend
            .conn()
            .prepare("SELECT message_id FROM publishes")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        assert_eq!(left, ["kept"]);
    }

    #[test]
    fn a_file_from_another_schema_version_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = SqliteBackend::file_in(dir.path());
        drop(SqliteBackend::open(&path, Arc::new(SystemClock)).unwrap());
        drop(SqliteBackend::open(&path, Arc::new(SystemClock)).unwrap()); // the same version reopens
        Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
        let err = SqliteBackend::open(&path, Arc::new(SystemClock)).err().unwrap().to_string();
        assert!(err.contains("schema version 99"), "{err}");
    }
}
