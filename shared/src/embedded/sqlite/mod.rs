//! One SQLite file holds the store and the durable delivery queue.
//!
//! WAL journal with `synchronous=NORMAL`: a commit survives a process crash, and readers never
//! block the writer. Writes go to one writer thread that commits them in groups
//! ([`writer`]); plain reads use a few read-only connections beside it; a thread of its own
//! copies the WAL back into the file ([`checkpointer`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use checkpointer::Checkpointer;
use std::time::Duration;
use writer::Writer;

use rusqlite::Connection;
use time::OffsetDateTime;

use crate::ports::Clock;
use crate::{Error, Result};

mod checkpointer;
mod queue;
mod store;
mod writer;

/// The version 1 schema; the steps of [`migrate`] bring a file from there to the current one.
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

/// Prepared statements each connection keeps.
const STATEMENTS_CACHED: usize = 64;

/// The schema version this build writes (`PRAGMA user_version`). A new column or table means
/// a new version and a step in [`migrate`].
const SCHEMA_VERSION: i64 = 15;

/// Version 2: API keys may carry a request-signing client secret.
const ADD_CLIENT_SECRET: &str = "ALTER TABLE api_keys ADD COLUMN client_secret TEXT;";

/// Version 3: the worker's retention purge finds old attempts and expired messages by index.
const ADD_EXPIRY_INDEXES: &str = "CREATE INDEX IF NOT EXISTS attempts_by_time ON attempts (at); \
                                  CREATE INDEX IF NOT EXISTS publishes_by_expiry ON publishes (expires_at);";

/// Version 4: rotated-out signing keys still in their overlap (JSON, newest first).
const ADD_PREVIOUS_SIGNING_KEYS: &str =
    "ALTER TABLE subscriptions ADD COLUMN previous_signing_keys TEXT NOT NULL DEFAULT '[]';";

/// Version 5: fan-out reads an organization's subscriptions and matches events in memory, so
/// the per-event index goes.
const DROP_EVENT_INDEX: &str = "DROP TABLE IF EXISTS subscription_events;";

/// Version 6: values used once until they expire (the signatures of Metro's signed requests).
const ADD_NONCES: &str = "CREATE TABLE IF NOT EXISTS nonces (nonce TEXT PRIMARY KEY, expires_at INTEGER NOT NULL); \
                          CREATE INDEX IF NOT EXISTS nonces_by_expiry ON nonces (expires_at);";

/// Version 7: secrets every process shares, made once (the portal's signing key).
const ADD_SECRETS: &str = "CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL);";

/// Version 8: the headers of each attempt's request, as sent (JSON pairs).
const ADD_REQUEST_HEADERS: &str = "ALTER TABLE attempts ADD COLUMN request_headers TEXT NOT NULL DEFAULT '[]';";

/// Version 9: delivery options (rate limit, ordering) on subscriptions; ordered jobs wait in
/// their line on the queue (`line`, parked until the job ahead of them leaves); the next free
/// slot of each rate-limited subscription; the ordering key a message was published with.
const ADD_DELIVERY_OPTIONS: &str = "ALTER TABLE subscriptions ADD COLUMN delivery TEXT NOT NULL DEFAULT '{}'; \
                                    ALTER TABLE queue ADD COLUMN line TEXT; \
                                    CREATE INDEX IF NOT EXISTS queue_by_line ON queue (line, id) WHERE line IS NOT NULL; \
                                    CREATE TABLE IF NOT EXISTS paces (key TEXT PRIMARY KEY, next INTEGER NOT NULL); \
                                    ALTER TABLE publishes ADD COLUMN ordering_key TEXT;";

/// Version 10: the version of the limit each pace follows (a changed limit starts a new pace).
const ADD_PACE_VERSION: &str = "ALTER TABLE paces ADD COLUMN version INTEGER NOT NULL DEFAULT 0;";

/// Version 11: a job in flight when its subscription's limit changed is marked, so that the
/// wait it is put off for (read under the old limit) is cut to now.
const ADD_QUEUE_HASTENED: &str = "ALTER TABLE queue ADD COLUMN hastened INTEGER NOT NULL DEFAULT 0;";

/// Version 12: whether an attempt sent its message to the dead letters (health by messages).
const ADD_ATTEMPT_DEAD_LETTERED: &str = "ALTER TABLE attempts ADD COLUMN dead_lettered INTEGER NOT NULL DEFAULT 0;";

/// Version 13: the subscriptions whose filter a message did not match (a JSON array).
const ADD_FILTERED_OUT: &str = "ALTER TABLE publishes ADD COLUMN filtered_out TEXT;";

/// Version 14: a job queued by its publish reads its payload from the message's row (`message`,
/// the row's rowid) instead of keeping a copy: at fan-out 10 the copies were most of what the
/// writer wrote.
const ADD_QUEUE_MESSAGE: &str = "ALTER TABLE queue ADD COLUMN message INTEGER;";

/// Version 15: since when a subscription's first attempts have been too slow for the first lane.
const ADD_SLOW_SINCE: &str = "ALTER TABLE subscriptions ADD COLUMN slow_since INTEGER;";

/// The migrations: `STEPS[n]` brings a file from version n to n + 1 (version 0: a new file).
const STEPS: [&str; SCHEMA_VERSION as usize] = [
    SCHEMA,
    ADD_CLIENT_SECRET,
    ADD_EXPIRY_INDEXES,
    ADD_PREVIOUS_SIGNING_KEYS,
    DROP_EVENT_INDEX,
    ADD_NONCES,
    ADD_SECRETS,
    ADD_REQUEST_HEADERS,
    ADD_DELIVERY_OPTIONS,
    ADD_PACE_VERSION,
    ADD_QUEUE_HASTENED,
    ADD_ATTEMPT_DEAD_LETTERED,
    ADD_FILTERED_OUT,
    ADD_QUEUE_MESSAGE,
    ADD_SLOW_SINCE,
];

/// Brings a new file to the current schema; refuses a file from a newer or unknown build rather
/// than misreading it.
fn migrate(conn: &Connection, path: &Path) -> Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let steps = match version {
        SCHEMA_VERSION => return Ok(()),
        known @ 0..SCHEMA_VERSION => STEPS[known as usize..].to_vec(),
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

/// Read-only connections beside the writer (one per core of the development machine).
const READERS: usize = 2;

/// The SQLite file behind the store and queue ports.
pub struct SqliteBackend {
    /// The one writer: every write, and reads inside a write's transaction.
    writer: Writer,
    /// Declared after the writer: dropped after it, so the last commit is checkpointed too.
    _checkpointer: Checkpointer,
    /// Read-only connections for plain reads: WAL lets them run beside the writer and each
    /// other, so authentication, fan-out and the worker's lookups do not queue behind writes.
    readers: Vec<Mutex<Connection>>,
    next_reader: std::sync::atomic::AtomicUsize,
    clock: Arc<dyn Clock>,
    path: PathBuf,
    /// Wakes the consumer in this process (the worker of `tidings serve`) when jobs were queued.
    jobs_queued: tokio::sync::Notify,
    /// When the earliest delayed job becomes due (nanoseconds; `i64::MAX`: none known), so the
    /// worker wakes for it rather than at its next idle poll (a paced job's slot is to the
    /// millisecond).
    next_due: std::sync::atomic::AtomicI64,
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
        // Room for every statement the writer runs (the default 16 made some prepare again).
        conn.set_prepared_statement_cache_capacity(STATEMENTS_CACHED);
        // Checkpoints run on a thread of their own (`Checkpointer`), never inside a commit.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        migrate(&conn, path)?;
        let readers = (0..READERS)
            .map(|_| {
                let reader = Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(|e| Error::internal(format!("cannot open {}: {e}", path.display())))?;
                reader.busy_timeout(Duration::from_secs(5))?;
                reader.set_prepared_statement_cache_capacity(STATEMENTS_CACHED);
                Ok(Mutex::new(reader))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(SqliteBackend {
            writer: Writer::start(conn)?,
            _checkpointer: Checkpointer::start(path)?,
            readers,
            next_reader: Default::default(),
            clock,
            path: path.to_owned(),
            jobs_queued: Default::default(),
            next_due: std::sync::atomic::AtomicI64::new(i64::MAX),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` on the writer thread, inside a savepoint of the next group's transaction;
    /// resolves once that group is committed.
    fn write<T, F>(&self, work: F) -> impl std::future::Future<Output = Result<T>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.writer.write(work)
    }

    /// A read-only connection: a free one if any, else the next in turn.
    fn reader(&self) -> MutexGuard<'_, Connection> {
        let start = self.next_reader.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for i in 0..self.readers.len() {
            if let Ok(reader) = self.readers[(start + i) % self.readers.len()].try_lock() {
                return reader;
            }
        }
        // A panic while holding a reader leaves SQLite consistent, so a poisoned lock is reusable.
        let reader = &self.readers[start % self.readers.len()];
        reader.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn now_nanos(&self) -> i64 {
        to_nanos(self.clock.now())
    }
}

/// Nanoseconds since the epoch; times past what an i64 holds (after 2262) saturate, so a bound
/// such as `since=2999-01-01T00:00:00Z` still compares as "later than everything".
fn to_nanos(t: OffsetDateTime) -> i64 {
    t.unix_timestamp_nanos().clamp(i64::MIN.into(), i64::MAX.into()) as i64
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

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::params;
    use uuid::Uuid;

    use crate::domain::{AttemptRecord, OrganizationId, Scope};
    use crate::ports::SystemClock;
    use crate::ports::{KeyStore, MessageLog};

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
        let version: i64 = backend.reader().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[tokio::test]
    async fn a_file_of_every_earlier_version_is_upgraded_to_one_that_stores_everything() {
        use crate::ports::SubscriptionStore;
        for version in 1..SCHEMA_VERSION {
            let dir = tempfile::tempdir().unwrap();
            let path = SqliteBackend::file_in(dir.path());
            {
                let old = Connection::open(&path).unwrap();
                old.execute_batch(&STEPS[..version as usize].concat()).unwrap();
                old.pragma_update(None, "user_version", version).unwrap();
            }
            let backend = SqliteBackend::open(&path, Arc::new(SystemClock)).unwrap();
            let org = crate::domain::OrganizationId(Uuid::new_v4());
            let mut sub = crate::domain::Subscription::new(
                org,
                Uuid::new_v4(),
                crate::domain::Dialect::Zettle,
                vec![],
                "https://x.example",
                time::OffsetDateTime::now_utc(),
            );
            sub.delivery.ordered = true;
            backend.create_subscription(&sub).await.unwrap_or_else(|e| panic!("version {version}: {e}"));
            assert_eq!(backend.get_subscription(org, sub.id).await.unwrap(), Some(sub), "version {version}");
            let attempt = crate::domain::AttemptRecord {
                organization: org,
                subscription_id: Uuid::nil(),
                message_id: "m".into(),
                event_name: "e".into(),
                attempt: 1,
                at: time::OffsetDateTime::now_utc(),
                status: Some(200),
                latency_ms: 1,
                response_excerpt: String::new(),
                error: None,
                request_headers: vec![("a".into(), "b".into())],
                dead_lettered: false,
            };
            crate::ports::MessageLog::record_attempts(&backend, &[attempt])
                .await
                .unwrap_or_else(|e| panic!("version {version}: {e}"));
        }
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
            request_headers: Vec::new(),
            dead_lettered: false,
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
            ordering_key: None,
            filtered_out: Vec::new(),
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
            .reader()
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

    /// The queue's rows as kept: (whether the job keeps a payload of its own, whether it reads
    /// its message's), by id.
    fn queue_rows(backend: &SqliteBackend) -> Vec<(bool, bool)> {
        let conn = backend.reader();
        let mut stmt = conn
            .prepare("SELECT json_extract(job, '$.payload') IS NOT NULL, message IS NOT NULL FROM queue ORDER BY id")
            .unwrap();
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        rows.map(Result::unwrap).collect()
    }

    #[tokio::test]
    async fn a_published_job_reads_its_payload_from_its_message_and_takes_a_copy_before_the_message_goes() {
        use crate::domain::{DeliveryJob, PublishRecord};
        use crate::ports::{PublishLog, Queue};
        use std::time::Duration;
        let dir = tempfile::tempdir().unwrap();
        let backend = SqliteBackend::open_in(dir.path(), Arc::new(SystemClock)).unwrap();
        let (org, now) = (OrganizationId(Uuid::new_v4()), time::OffsetDateTime::now_utc());
        let window = time::Duration::hours(24);
        let first = PublishRecord::new(org, "m-1", "ProductUpdated", r#"{"v":1}"#, 2, now);
        let jobs = [DeliveryJob::new(&first, Uuid::new_v4()), DeliveryJob::new(&first, Uuid::new_v4())];
        assert!(backend.publish(&first, &jobs, window).await.unwrap().is_none());
        assert_eq!(queue_rows(&backend), [(false, true), (false, true)], "no copies of the payload");
        let received = backend.receive(10, Duration::from_secs(60)).await.unwrap();
        assert_eq!(received.iter().map(|r| r.job.clone()).collect::<Vec<_>>(), jobs, "received as published");
        // A delivery whose job carries the payload reads only the claim.
        let sub = jobs[0].subscription_id;
        let (_, claim) = backend.delivery_records(org, sub, "m-1", true, false).await.unwrap();
        assert_eq!(claim.map(|c| (c.created_at, c.payload)), Some((first.created_at, String::new())));
        let (_, message) = backend.delivery_records(org, sub, "m-1", true, true).await.unwrap();
        assert_eq!(message.unwrap().payload, first.payload);

        // Written back (put off, retried): still without a copy.
        backend.put_off(&received[0], &received[0].job.checked(), Duration::ZERO).await.unwrap();
        backend.retry_later(&received[1], Duration::ZERO).await.unwrap();
        assert_eq!(queue_rows(&backend), [(false, true), (false, true)]);
        let received = backend.receive(10, Duration::from_secs(60)).await.unwrap();
        assert!(received.iter().all(|r| r.job.payload.as_deref() == Some(r#"{"v":1}"#)));
        assert_eq!(received[1].job.attempts, 1);
        backend.defer(&received[0].receipt, Duration::ZERO).await.unwrap();
        backend.defer(&received[1].receipt, Duration::ZERO).await.unwrap();

        // The same id published again after the window: the earlier jobs keep the earlier payload.
        let again = PublishRecord::new(org, "m-1", "ProductUpdated", r#"{"v":2}"#, 1, now + window);
        let later = DeliveryJob::new(&again, Uuid::new_v4());
        assert!(backend.publish(&again, std::slice::from_ref(&later), window).await.unwrap().is_none());
        assert_eq!(queue_rows(&backend), [(true, false), (true, false), (false, true)]);

        // The message expires and is purged: its job takes a copy first.
        backend.purge_expired(now + time::Duration::days(30), 100).await.unwrap();
        assert_eq!(queue_rows(&backend), [(true, false), (true, false), (true, false)]);
        let received = backend.receive(10, Duration::from_secs(60)).await.unwrap();
        let payloads: Vec<_> = received.iter().map(|r| r.job.payload.clone().unwrap()).collect();
        assert_eq!(payloads, [r#"{"v":1}"#, r#"{"v":1}"#, r#"{"v":2}"#]);

        // A job of its own (a replay, a put-off with a copy) keeps it when written back.
        backend.put_off(&received[2], &received[2].job, Duration::ZERO).await.unwrap();
        assert_eq!(queue_rows(&backend)[2], (true, false));
    }
}
