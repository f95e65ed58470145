//! Copies the WAL back into the database file on a thread of its own, so no commit ever waits
//! for it. SQLite's own checkpoints run inside the commit that fills the WAL past a size: the
//! writer (and everyone waiting for its commit, a publish's 202 among them) paused for the copy
//! and its fsync — tens of milliseconds once the WAL is large. A passive checkpoint here runs
//! beside the writer and its readers, and copies each page once however often it was written
//! since the last one, so checkpoints a second apart copy far less than one every 1,000 pages.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;

use crate::{Error, Result};

/// How often the WAL is copied back.
const EVERY: Duration = Duration::from_secs(1);

/// The checkpointing thread; dropping it runs a last checkpoint and ends the thread.
pub(super) struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    pub(super) fn start(path: &Path) -> Result<Checkpointer> {
        let conn =
            Connection::open(path).map_err(|e| Error::internal(format!("cannot open {}: {e}", path.display())))?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpointer".into())
            .spawn(move || {
                loop {
                    let last = !matches!(stopped.recv_timeout(EVERY), Err(mpsc::RecvTimeoutError::Timeout));
                    // Passive: never waits for, nor holds up, the writer or a reader; what it
                    // cannot copy now it copies next time.
                    if let Err(err) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        tracing::warn!(error = %err, "cannot checkpoint the WAL; tried again in a second");
                    }
                    if last {
                        return;
                    }
                }
            })
            .map_err(|e| Error::internal(format!("cannot start the SQLite checkpointer: {e}")))?;
        Ok(Checkpointer { stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wal_frames(path: &Path) -> i64 {
        let conn = Connection::open(path).unwrap();
        // A checkpoint of nothing new reports the WAL's frames and how many are in the file.
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1)).unwrap()
    }

    #[test]
    fn the_wal_is_copied_back_beside_the_writer_which_never_checkpoints_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let writer = Connection::open(&path).unwrap();
        writer.pragma_update(None, "journal_mode", "WAL").unwrap();
        writer.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        writer.execute_batch("CREATE TABLE t (v BLOB)").unwrap();
        let checkpointer = Checkpointer::start(&path).unwrap();
        for _ in 0..200 {
            writer.execute("INSERT INTO t (v) VALUES (zeroblob(4000))", []).unwrap();
        }
        let rows: i64 = writer.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 200);
        // Dropped: the last checkpoint copies everything into the file.
        drop(checkpointer);
        assert!(wal_frames(&path) > 0, "the writer left it to the checkpointer");
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size > 200 * 4000, "the rows are in the database file itself: {size} bytes");
    }
}
