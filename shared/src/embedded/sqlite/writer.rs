//! The one writer of the SQLite file: a thread of its own that commits writes in groups.
//!
//! Every write (a publish with its jobs, a queue read, acknowledgements, attempt records, …) is
//! sent here and runs inside a savepoint of the group's transaction, so it is kept or rolled back
//! whole, alone. Writes that arrive while a group commits wait and form the next group: under
//! load many publishes, acknowledgements and attempt records share one commit; alone, a write
//! commits at once. Nobody is answered before the commit that holds their write, so a caller
//! told "stored" (a publish's 202) has it on disk as far as a process crash goes. SQLite work
//! never blocks the async runtime's threads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::{Error, Result};

/// The most writes one commit holds (bounds how long one group keeps the others waiting).
const MAX_GROUP: usize = 512;

/// One write waiting for its group.
trait Pending: Send {
    /// Runs the write on the group's transaction; whether it succeeded.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the group's commit is over.
    fn answer(self: Box<Self>, commit: &Result<()>);
}

struct Write<T, F> {
    work: Option<F>,
    outcome: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T: Send, F: FnOnce(&Connection) -> Result<T> + Send> Pending for Write<T, F> {
    fn run(&mut self, conn: &Connection) -> bool {
        let work = self.work.take().expect("a write runs once");
        let outcome = work(conn);
        let succeeded = outcome.is_ok();
        self.outcome = Some(outcome);
        succeeded
    }

    fn answer(self: Box<Self>, commit: &Result<()>) {
        let outcome = match (self.outcome, commit) {
            // The group was rolled back: what this write did is gone too.
            (Some(Ok(_)), Err(err)) | (None, Err(err)) => Err(err.clone()),
            (Some(outcome), Ok(())) | (Some(outcome @ Err(_)), Err(_)) => outcome,
            (None, Ok(())) => Err(Error::internal("sqlite: the write did not run")),
        };
        // A caller that stopped waiting (a cancelled request) needs no answer.
        let _ = self.reply.send(outcome);
    }
}

/// The handle the backend writes through; dropping it lets the thread finish and close the file.
pub(super) struct Writer {
    queue: Option<mpsc::Sender<Box<dyn Pending>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Groups committed or rolled back so far.
    #[cfg_attr(not(test), allow(dead_code))]
    groups: Arc<AtomicU64>,
}

impl Writer {
    /// Takes over `conn` on a new thread.
    pub(super) fn start(conn: Connection) -> Result<Writer> {
        let (queue, writes) = mpsc::channel::<Box<dyn Pending>>();
        let groups = Arc::new(AtomicU64::new(0));
        let counted = groups.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || commit_groups(conn, writes, counted))
            .map_err(|e| Error::internal(format!("cannot start the SQLite writer: {e}")))?;
        Ok(Writer { queue: Some(queue), thread: Some(thread), groups })
    }

    /// Runs `work` in the next group; resolves once that group's commit is over. The write is
    /// queued when this is called, not when the future is first polled, so writes keep the
    /// order of the calls.
    pub(super) fn write<T, F>(&self, work: F) -> impl std::future::Future<Output = Result<T>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let pending = Box::new(Write { work: Some(work), outcome: None, reply });
        let sent = self.queue.as_ref().map(|queue| queue.send(pending).is_ok()).unwrap_or(false);
        async move {
            if !sent {
                return Err(Error::internal("sqlite: the writer has stopped"));
            }
            answer.await.unwrap_or_else(|_| Err(Error::internal("sqlite: the writer stopped before answering")))
        }
    }

    /// How many groups have been committed or rolled back (for tests of the grouping).
    #[cfg(test)]
    pub(super) fn groups(&self) -> u64 {
        self.groups.load(Ordering::Relaxed)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // The thread ends once the queue is closed and empty; waiting for it means the file is
        // closed when the backend is gone (a reopen never finds it still locked).
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn commit_groups(conn: Connection, writes: mpsc::Receiver<Box<dyn Pending>>, groups: Arc<AtomicU64>) {
    let mut group: Vec<Box<dyn Pending>> = Vec::with_capacity(MAX_GROUP);
    while let Ok(first) = writes.recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match writes.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        // Converted once: a full disk is told as such (503) to every write of the group.
        let commit = run_group(&conn, &mut group).map_err(Error::from);
        if let Err(err) = &commit {
            tracing::error!(error = %err, writes = group.len(), "a group of SQLite writes was rolled back");
        }
        groups.fetch_add(1, Ordering::Relaxed);
        for pending in group.drain(..) {
            pending.answer(&commit);
        }
    }
}

/// One transaction: each write in its own savepoint, then one commit for all. The statements
/// are prepared once (parsing them for every write was a fifth of the writer's time under load).
fn run_group(conn: &Connection, group: &mut [Box<dyn Pending>]) -> rusqlite::Result<()> {
    let run = |sql: &str| conn.prepare_cached(sql)?.execute([]).map(drop);
    run("BEGIN IMMEDIATE")?;
    let result = (|| {
        for pending in group.iter_mut() {
            run("SAVEPOINT write")?;
            if !pending.run(conn) {
                run("ROLLBACK TO write")?;
            }
            run("RELEASE write")?;
        }
        run("COMMIT")
    })();
    if result.is_err() && !conn.is_autocommit() {
        // Nothing of the group is kept; every caller is told.
        let _ = conn.execute_batch("ROLLBACK");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> (Writer, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("w.db")).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (v TEXT NOT NULL)").unwrap();
        (Writer::start(conn).unwrap(), dir)
    }

    fn insert(value: &'static str) -> impl FnOnce(&Connection) -> Result<()> + Send + 'static {
        move |conn| {
            conn.execute("INSERT INTO t (v) VALUES (?1)", [value])?;
            Ok(())
        }
    }

    fn values(writer: &Writer) -> impl std::future::Future<Output = Result<Vec<String>>> {
        writer.write(|conn| {
            let mut stmt = conn.prepare("SELECT v FROM t ORDER BY rowid")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })
    }

    /// Holds the writer inside a group of its own until the returned sender is dropped: what is
    /// written meanwhile forms the next group.
    fn hold(writer: &Writer) -> (mpsc::Sender<()>, impl std::future::Future<Output = Result<()>>) {
        let (release, held) = mpsc::channel::<()>();
        let (started, running) = mpsc::channel::<()>();
        let done = writer.write(move |_| {
            started.send(()).unwrap();
            let _ = held.recv();
            Ok(())
        });
        running.recv().unwrap();
        (release, done)
    }

    #[tokio::test]
    async fn writes_that_arrive_during_a_commit_share_the_next_one() {
        let (writer, _dir) = writer();
        let (release, held) = hold(&writer);
        let waiting: Vec<_> = (0..100).map(|_| writer.write(insert("x"))).collect();
        drop(release);
        held.await.unwrap();
        for write in futures::future::join_all(waiting).await {
            write.unwrap();
        }
        assert_eq!(writer.groups(), 2, "the held group, then one for the 100 writes");
        assert_eq!(values(&writer).await.unwrap().len(), 100);
    }

    #[tokio::test]
    async fn a_failed_write_is_rolled_back_alone_and_its_group_is_kept() {
        let (writer, _dir) = writer();
        let (release, held) = hold(&writer);
        let kept = writer.write(insert("kept"));
        let failed = writer.write(|conn| {
            conn.execute("INSERT INTO t (v) VALUES ('half')", [])?;
            Err::<(), _>(Error::internal("refused halfway"))
        });
        let also_kept = writer.write(insert("also kept"));
        drop(release);
        held.await.unwrap();
        kept.await.unwrap();
        assert!(failed.await.unwrap_err().to_string().contains("refused halfway"));
        also_kept.await.unwrap();
        assert_eq!(values(&writer).await.unwrap(), ["kept", "also kept"]);
        assert_eq!(writer.groups(), 3, "held, the three writes, the read");
    }

    #[tokio::test]
    async fn when_the_commit_fails_every_write_of_the_group_is_told_and_nothing_is_kept() {
        let (writer, _dir) = writer();
        let (release, held) = hold(&writer);
        let first = writer.write(insert("a"));
        // Turns this group's COMMIT into a rollback, as a failing disk would.
        let refuse_commit = writer.write(|conn| {
            conn.commit_hook(Some(|| true));
            Ok(())
        });
        let last = writer.write(insert("b"));
        drop(release);
        held.await.unwrap();
        for write in [first.await, refuse_commit.await, last.await] {
            assert!(matches!(write.unwrap_err(), Error::Internal(m) if m.starts_with("sqlite: ")));
        }
        writer
            .write(|conn| {
                conn.commit_hook(None::<fn() -> bool>);
                Ok(())
            })
            .await
            .unwrap();
        assert!(values(&writer).await.unwrap().is_empty());
        writer.write(insert("c")).await.unwrap();
        assert_eq!(values(&writer).await.unwrap(), ["c"]);
    }

    #[tokio::test]
    async fn dropping_the_writer_finishes_queued_writes_and_closes_the_file() {
        let (writer, dir) = writer();
        let queued = writer.write(insert("last"));
        drop(writer);
        queued.await.unwrap();
        let conn = Connection::open(dir.path().join("w.db")).unwrap();
        let count: i64 = conn.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(count, 1);
    }
}
