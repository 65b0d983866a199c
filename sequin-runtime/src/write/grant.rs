//! The grant that lets a client's session write synced tables while the
//! proxy applies one of its statements (migration 0006).
//!
//! A session of Sequin's own (the thread's journal session) holds the
//! advisory lock (`CLASS`, client backend pid) from just before the
//! client's statement runs until the write-back is done; the guard trigger
//! lets the client's backend write while a backend of Sequin's role holds
//! that lock for it. Nothing secret travels in the client's session: the
//! lock is taken on another connection, and it is not MVCC, so any
//! snapshot the client has sees it, and it ends when Sequin lets go or its
//! session dies.

use std::sync::Arc;

use super::journal::Journal;

/// The advisory lock class of grants: ASCII `SQNG` (see migration 0006).
pub const CLASS: i32 = 0x5351_4E47;

/// Why a grant could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// Some other session holds the lock for this backend (a client can
    /// take any advisory lock; it only blocks its own writes).
    #[error(
        "another session holds Sequin's write-through lock for this backend (advisory lock {CLASS}, {pid}); release it"
    )]
    Taken { pid: i32 },
    #[error("Sequin's database session failed: {0}")]
    Db(#[from] tokio_postgres::Error),
}

/// A held grant. End it with [`Grant::end`]; if Sequin's session dies
/// first, Postgres ends it.
pub struct Grant {
    journal: Arc<Journal>,
    pid: i32,
}

impl Grant {
    /// Takes the grant for backend `pid` on `journal`'s session.
    pub async fn take(journal: Arc<Journal>, pid: i32) -> Result<Grant, GrantError> {
        if journal.try_grant(pid).await? {
            Ok(Grant { journal, pid })
        } else {
            Err(GrantError::Taken { pid })
        }
    }

    /// Lets go of the grant. A failure means the session is gone, and the
    /// lock with it.
    pub async fn end(self) {
        if let Err(e) = self.journal.ungrant(self.pid).await {
            tracing::warn!(error = %e, pid = self.pid, "write-through: ending a grant failed (the session holding it is gone, and the grant with it)");
        }
    }
}
